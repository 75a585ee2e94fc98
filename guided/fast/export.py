"""Exporting a fast network so that anyone can run it without our code.

The contract of every exported file: input float32 NCHW RGB in [0, 1], any height and width (>= 8);
output the same shape, in [0, 1]. Padding to a multiple of 4 and cropping back happen inside the
graph. The model card travels in the file's metadata where the format allows (ONNX metadata_props,
the pt2 archive's extra file `card.json`, TorchScript's `_extra_files`).

- `onnx`: `torch.onnx.export` (dynamo) with dynamic height and width, then checked against PyTorch
  with onnxruntime at two non-square sizes, one not a multiple of 4; the largest difference is reported.
- `pt2`: a `torch.export` program with dynamic height and width (`torch.export.load` reads it).
- `torchscript`: `torch.jit.script`; a legacy format, deprecated upstream in favour of torch.export.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from guided.errors import GuidedError
from guided.fast.network import TransformerNet

logger = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt"}
#: Sizes the exported graph is checked at: non-square, one not a multiple of 4 (padding and crop inside).
CHECK_SIZES = ((64, 96), (75, 50))
#: Largest absolute difference from PyTorch accepted at export (outputs in [0, 1]; float32 kernels differ ~1e-6).
TOLERANCE = 1e-4
ONNX_OPSET = 18
TORCHSCRIPT_NOTE = ("TorchScript is a legacy format, deprecated upstream (PyTorch recommends torch.export); "
                    "use --format pt2 or onnx for new deployments")
EXPORT_HINT = "pip install guided[export]"


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # "HxW" -> max |exported - PyTorch|
    notes: list[str] = field(default_factory=list)


def _example(h: int, w: int, batch: int = 1) -> Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))


def _dynamic_shapes():
    from torch.export import Dim

    # Any size >= 8 (the smallest the network accepts); batch dynamic too.
    return {"image": {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=8, max=16384),
                      3: Dim("width", min=8, max=16384)}}


class _Exportable(torch.nn.Module):
    """The network with its input named `image`, for readable exported graphs."""

    def __init__(self, net: TransformerNet):
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def check_output(output: str | Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise GuidedError(f"`--format` must be one of {', '.join(FORMATS)}, got {fmt!r}")
    output = Path(output)
    if output.is_dir():
        raise GuidedError(f"`--output` '{output}' is a folder; give a file name such as net{FORMATS[fmt]}")
    from guided.io.outputs import Output, check_outputs

    check_outputs([Output(output, "--output", kind="file", suffixes=(FORMATS[fmt],))])
    return output


def _publish(tmp: Path, output: Path) -> None:
    from guided.io.files import fsync_dir

    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, output)
    fsync_dir(output.parent)


def export(net: TransformerNet, card: dict, output: str | Path, fmt: str) -> ExportResult:
    """Write `net` to `output` in `fmt` (onnx, pt2, torchscript), atomically, checked against PyTorch."""
    output = check_output(output, fmt)
    net = net.float().eval().requires_grad_(False)
    module = _Exportable(net).eval()
    card_json = json.dumps(card, ensure_ascii=False)
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as folder:
        tmp = Path(folder) / f"export{FORMATS[fmt]}"
        if fmt == "onnx":
            result = _onnx(module, card_json, tmp)
        elif fmt == "pt2":
            result = _pt2(module, card_json, tmp)
        else:
            result = _torchscript(net, card_json, tmp)
        worst = max(result.max_abs_diff.values())
        if not worst <= TOLERANCE:
            raise GuidedError(f"the exported {fmt} graph differs from PyTorch by {worst:.3g} (> {TOLERANCE:g}); "
                              "nothing written")
        _publish(tmp, output)
    result.path = output
    return result


def _compare(run, module) -> dict[str, float]:
    diffs = {}
    with torch.no_grad():
        for h, w in CHECK_SIZES:
            x = _example(h, w)
            expected = module(x)
            got = run(x)
            if tuple(got.shape) != tuple(expected.shape):
                raise GuidedError(f"the exported graph returned shape {tuple(got.shape)} for input {tuple(x.shape)}")
            diffs[f"{h}x{w}"] = float((got - expected).abs().max())
    return diffs


def _onnx(module, card_json: str, tmp: Path) -> ExportResult:
    try:
        import onnx
        import onnxruntime as ort  # noqa: F401 - checked here so that the error says what to install
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError as exc:
        raise GuidedError(f"--format onnx needs onnx, onnxscript and onnxruntime ({exc.name} is missing): "
                          f"{EXPORT_HINT}") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (_example(64, 96, batch=2),), dynamo=True, dynamic_shapes=_dynamic_shapes(),
                                    input_names=["image"], output_names=["stylized"], opset_version=ONNX_OPSET,
                                    verbose=False)
    model = program.model_proto
    onnx.helper.set_model_props(model, {"card": card_json, "contract": CONTRACT})
    onnx.save_model(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    from guided.fast.apply import OnnxRunner

    runner = OnnxRunner(tmp)
    return ExportResult(tmp, "onnx", _compare(runner, module))


def _pt2(module, card_json: str, tmp: Path) -> ExportResult:
    program = torch.export.export(module, (_example(64, 96, batch=2),), dynamic_shapes=_dynamic_shapes())
    torch.export.save(program, str(tmp), extra_files={"card.json": card_json, "contract.txt": CONTRACT})
    loaded = torch.export.load(str(tmp)).module()
    return ExportResult(tmp, "pt2", _compare(loaded, module))


def _torchscript(net: TransformerNet, card_json: str, tmp: Path) -> ExportResult:
    import warnings

    logger.warning(TORCHSCRIPT_NOTE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation warning itself: said once, in the result
        scripted = torch.jit.script(net)
        torch.jit.save(scripted, str(tmp), _extra_files={"card.json": card_json, "contract.txt": CONTRACT})
        loaded = torch.jit.load(str(tmp))
    return ExportResult(tmp, "torchscript", _compare(loaded, net), notes=[TORCHSCRIPT_NOTE])


CONTRACT = ("input: float32 NCHW RGB in [0, 1], any height and width >= 8; output: the same shape, RGB in [0, 1]; "
            "padding to a multiple of 4 and cropping back are inside the graph")

__all__ = ["CHECK_SIZES", "CONTRACT", "EXPORT_HINT", "FORMATS", "TORCHSCRIPT_NOTE", "ExportResult", "export"]
