"""Exported networks equal PyTorch's outputs at two non-square sizes, one not a multiple of 4."""
from __future__ import annotations

import json

import pytest
import torch
from fast_helpers import saved_network

from guided.errors import GuidedError
from guided.fast.checkpoint import load_network
from guided.fast.export import export

# Not the sizes export checks itself at; 45x30 is not a multiple of 4; 20x261 is wider than the
# input-noise tile (256 px), so the tile repeats inside the exported graph.
SIZES = ((36, 52), (45, 30), (20, 261))


@pytest.fixture(scope="module", params=[0.0, 0.05], ids=["plain", "input-noise"])
def network(tmp_path_factory, request):
    path = saved_network(tmp_path_factory.mktemp("export") / "net.safetensors", seed=5, input_noise=request.param)
    return load_network(path)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(2, 3, h, w, generator=g) for h, w in SIZES]


def test_onnx_with_dynamic_height_and_width_equals_pytorch(network, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    from guided.fast.apply import OnnxRunner

    net, card = network
    result = export(net, card, tmp_path / "net.onnx", "onnx")
    assert max(result.max_abs_diff.values()) < 1e-4
    runner = OnnxRunner(result.path)
    assert runner.card == card  # the card travels in the ONNX metadata
    for x in _inputs():
        with torch.no_grad():
            assert torch.allclose(runner(x), net(x), atol=1e-4)
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in (dims[2], dims[3]))  # symbolic height and width


def test_pt2_and_torchscript_equal_pytorch(network, tmp_path):
    net, card = network
    pt2 = export(net, card, tmp_path / "net.pt2", "pt2")
    extra = {"card.json": ""}
    program = torch.export.load(str(pt2.path), extra_files=extra).module()
    assert json.loads(extra["card.json"]) == card
    ts = export(net, card, tmp_path / "net.pt", "torchscript")
    assert "legacy" in ts.notes[0]
    scripted = torch.jit.load(str(ts.path))
    for x in _inputs():
        with torch.no_grad():
            expected = net(x)
            assert torch.allclose(program(x), expected, atol=1e-5)
            assert torch.allclose(scripted(x), expected, atol=1e-5)


def test_export_refuses_bad_outputs_and_formats(network, tmp_path):
    net, card = network
    with pytest.raises(GuidedError, match="is a folder"):
        export(net, card, tmp_path, "pt2")
    with pytest.raises(GuidedError, match="`--format`"):
        export(net, card, tmp_path / "net.tflite", "tflite")
    assert list(tmp_path.iterdir()) == []
