"""Stylizing with a fast network: one forward pass, from a `.safetensors` network or an `.onnx` file.

    from guided.fast.apply import FastStylizer
    stylizer = FastStylizer.load("mosaic.safetensors")         # or "mosaic.onnx" (onnxruntime, no torch model)
    result = stylizer("photo.jpg", size=512)
    result.save("out.png")                                      # with the manifest (network hash and card)
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from guided.errors import GuidedError
from guided.fast.network import MIN_SIDE
from guided.validate import integer

logger = logging.getLogger(__name__)

#: File suffixes `FastStylizer.load` runs: our safetensors networks and exported ONNX graphs.
NETWORK_SUFFIXES = (".safetensors", ".onnx")


@dataclass
class FastResult:
    """One stylized image with its manifest."""

    image: Image.Image
    metadata: dict
    seconds: float
    tensor: Tensor | None = field(default=None, repr=False)

    def save(self, path: str | Path, *, sidecar: bool = True) -> Path:
        from guided.io.images import save_image

        return save_image(self.image, path, metadata=self.metadata, sidecar=sidecar)


class OnnxRunner:
    """An exported ONNX network run by onnxruntime; called like the torch network on (B, 3, H, W) in [0, 1]."""

    def __init__(self, path: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise GuidedError(f"running '{path}' needs onnxruntime: pip install guided[export]") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a broken or foreign file
            raise GuidedError(f"ONNX file '{path}' cannot be loaded: {str(exc).splitlines()[0]}") from None
        self.input = self.session.get_inputs()[0].name
        self.card = _onnx_card(self.session, path)

    def __call__(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input: x.detach().cpu().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


def _onnx_card(session, path: Path) -> dict:
    import json

    meta = session.get_modelmeta().custom_metadata_map
    if "card" not in meta:
        raise GuidedError(f"ONNX file '{path}' has no guided model card in its metadata; "
                          "export it with `guided export`")
    return json.loads(meta["card"])


class FastStylizer:
    """A loaded network (torch or ONNX) and everything a manifest says about it."""

    def __init__(self, network, card: dict, source: Path, sha256: str, *, backend: str, device: torch.device,
                 mixed_precision: str = "no"):
        self.network, self.card, self.source, self.sha256 = network, card, source, sha256
        self.backend, self.device, self.mixed_precision = backend, device, mixed_precision

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, mixed_precision: str | None = None) -> FastStylizer:
        """A network from `.safetensors` (PyTorch) or `.onnx` (onnxruntime, CPU)."""
        from guided.accel import check_mixed_precision
        from guided.fast.checkpoint import load_network
        from guided.io.files import sha256_file

        path = Path(path)
        mp = check_mixed_precision(mixed_precision, device)
        if path.suffix == ".onnx":
            if not path.is_file():
                raise GuidedError(f"network file '{path}' does not exist")
            if mp != "no":
                raise GuidedError(f"`--mixed-precision` {mp} applies to PyTorch networks, "
                                  f"not to the ONNX file '{path}'")
            runner = OnnxRunner(path)
            return cls(runner, runner.card, path, sha256_file(path), backend="onnxruntime", device=torch.device("cpu"))
        if path.suffix != ".safetensors" and path.is_file():
            # Read it anyway: a pickle under any name is refused with the reason, a foreign file named.
            load_network(path)
        net, card = load_network(path)
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return cls(net.to(dev), card, path, sha256_file(path), backend="pytorch", device=dev, mixed_precision=mp)

    def describe(self) -> dict:
        """The network as a manifest names it: file, hash, backend and its card."""
        return {"file": str(self.source), "sha256": self.sha256, "backend": self.backend, "card": self.card}

    @torch.no_grad()
    def run_tensor(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> stylized, same shape, float32 on the CPU."""
        if self.backend == "onnxruntime":
            return self.network(x)
        with self.autocast():
            return self.network(x.to(self.device)).float().cpu()

    def autocast(self):
        """The PyTorch network's precision context: autocast for bf16/fp16, nothing for float32."""
        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def __call__(self, photo: str | Path | Image.Image, *, size: int | None = None,
                 preserve_color: bool = False) -> FastResult:
        """Stylize one photo; `size` is the long side of the output (None: the photo's own size)."""
        from guided.color import transfer_luminance
        from guided.io.images import load_image, pil_to_tensor, tensor_to_pil
        from guided.io.manifest import build_manifest

        if size is not None:
            integer(size, "size", low=MIN_SIDE)
        image = load_image(photo, what="photo")
        if size is not None and max(image.size) != size:
            scale = size / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        if min(image.size) < MIN_SIDE:
            raise GuidedError(f"photo '{photo}' is {image.width}x{image.height} px; a fast network needs at least "
                              f"{MIN_SIDE} px a side")
        x = pil_to_tensor(image)
        start = time.perf_counter()
        y = self.run_tensor(x)
        seconds = time.perf_counter() - start
        if preserve_color:
            y = transfer_luminance(y, x)
        parameters = {"photo": "<PIL image>" if isinstance(photo, Image.Image) else str(photo), "size": size,
                      "preserve_color": preserve_color, "output_size": [image.height, image.width]}
        metadata = build_manifest(kind="fast", parameters=parameters, seed=None, models={"network": self.describe()},
                                  device=str(self.device), precision=self.mixed_precision,
                                  seconds=round(seconds, 4))
        return FastResult(tensor_to_pil(y), metadata, seconds, y)


def stylize(network: str | Path, photo: str | Path | Image.Image, **options) -> FastResult:
    """One-off convenience: load `network` and stylize `photo` (see `FastStylizer.__call__`)."""
    return FastStylizer.load(network)(photo, **options)


__all__ = ["NETWORK_SUFFIXES", "FastResult", "FastStylizer", "OnnxRunner", "stylize"]
