"""`guided train`, `guided fast`, `guided export`, `guided inspect NET`, `guided batch --method fast` as a
user runs them; two processes under torchrun train the same network as one process with their batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fast_helpers import saved_network, write_photos, write_style
from PIL import Image

from guided.cli import main
from guided.io.images import read_metadata

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--image-size", "32", "--workers", "0", "--backbone", "vgg19-random", "--quiet"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_cli")
    return write_photos(root / "photos", n=4), write_style(root / "style.png"), saved_network(root / "net.safetensors")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_batch_2_equal_one_process_batch_4(inputs, tmp_path):
    from guided.fast.checkpoint import load_network

    photos, style, _ = inputs
    common = ["train", str(style), "--data", str(photos), "--iterations", "4", *TINY]
    one = tmp_path / "one.safetensors"
    assert main([*common, "--batch-size", "4", "-o", str(one)]) == 0
    two = tmp_path / "two.safetensors"
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "guided", *common, "--batch-size", "2", "-o", str(two)]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (net1, card1), (net2, card2) = load_network(one), load_network(two)
    assert card2["processes"] == 2 and card1["processes"] == 1
    # Gradients agree to float rounding (sums in another order); Adam's first steps move every weight by
    # ~lr whatever the gradient's size, so an entry whose gradient is ~0 can step either way: the weights
    # agree closely on average, and everywhere within 2 x lr x steps (8e-3: opposite Adam steps).
    diffs = torch.cat([(a - b).abs().flatten() for a, b in zip(net1.state_dict().values(),
                                                                 net2.state_dict().values())])
    assert float(diffs.mean()) < 1e-4 and float(diffs.max()) < 8e-3, (float(diffs.mean()), float(diffs.max()))
    assert card1["final_losses"]["total"] == pytest.approx(card2["final_losses"]["total"], rel=1e-3)


def test_fast_one_photo_and_a_folder_with_manifest(inputs, tmp_path, capsys):
    photos, _, net = inputs
    out = tmp_path / "out.png"
    assert main(["fast", str(net), str(photos / "photo0.png"), "-o", str(out), "--size", "45"]) == 0
    image = Image.open(out)
    assert max(image.size) == 45
    manifest = read_metadata(out)
    assert manifest["kind"] == "fast" and manifest["models"]["network"]["card"]["note"] == "untrained test network"
    assert len(manifest["models"]["network"]["sha256"]) == 64
    assert main(["fast", str(net), str(photos), "-o", str(tmp_path / "folder"), "--preserve-color"]) == 0
    assert sorted(p.name for p in (tmp_path / "folder").glob("*.png")) == [f"photo{i}.png.fast.png" for i in range(4)]


def test_inspect_shows_the_card(inputs, capsys):
    _, _, net = inputs
    assert main(["inspect", str(net)]) == 0
    out = capsys.readouterr().out
    assert "note: untrained test network" in out and "width: half" in out


def test_batch_method_fast(inputs, tmp_path, capsys):
    photos, style, net = inputs
    out = tmp_path / "batch"
    assert main(["batch", str(photos), "-o", str(out), "--method", "fast", "--net", str(net), "--no-progress"]) == 0
    assert len(list(out.glob("*.fast.png"))) == 4
    assert main(["batch", str(photos), "-o", str(out), "--method", "fast", "--net", str(net), "--no-progress"]) == 0
    assert "4 already done" in capsys.readouterr().err
    assert main(["batch", str(photos), "-o", str(out), "--method", "fast", "--no-progress"]) == 2
    assert "`--net` is required" in capsys.readouterr().err
    assert main(["batch", str(photos), "-o", str(out), "--method", "fast", "--net", str(net), "--style",
                 str(style)]) == 2
    assert "--style do not apply to --method fast" in capsys.readouterr().err


def test_export_onnx_then_fast_runs_it_without_torch_model(inputs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    photos, _, net = inputs
    onnx_file = tmp_path / "net.onnx"
    assert main(["export", str(net), "--format", "onnx", "-o", str(onnx_file)]) == 0
    assert "max |difference| from PyTorch" in capsys.readouterr().out
    assert main(["fast", str(onnx_file), str(photos / "photo1.png"), "-o", str(tmp_path / "a.png")]) == 0
    assert main(["fast", str(net), str(photos / "photo1.png"), "-o", str(tmp_path / "b.png")]) == 0
    a = torch.tensor(list(Image.open(tmp_path / "a.png").getdata()), dtype=torch.float32)
    b = torch.tensor(list(Image.open(tmp_path / "b.png").getdata()), dtype=torch.float32)
    assert (a - b).abs().max() <= 1  # the same image, up to 8-bit rounding
    assert read_metadata(tmp_path / "a.png")["models"]["network"]["backend"] == "onnxruntime"


def _one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("guided: error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_inputs_one_line_exit_2_nothing_written(inputs, tmp_path, capsys):
    import pickle

    photos, style, net = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "new" / "net.safetensors"
    pickled = tmp_path / "net.pkl.safetensors"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(net.read_bytes()[:100])
    cases = [
        (["train", str(style), "--data", str(empty), "-o", str(out), *TINY], [str(empty), "no image files"]),
        (["train", str(tmp_path / "missing.jpg"), "--data", str(photos), "-o", str(out), *TINY], ["missing.jpg"]),
        (["train", str(style), "--data", str(photos), "-o", str(tmp_path), *TINY], [str(tmp_path), "is a folder"]),
        (["train", str(style), "--data", str(photos), "-o", str(out), "--iterations", "0", *TINY], ["`iterations`"]),
        (["fast", str(pickled), str(photos / "photo0.png"), "-o", str(tmp_path / "x.png")], ["pickle", str(pickled)]),
        (["fast", str(truncated), str(photos / "photo0.png"), "-o", str(tmp_path / "x.png")], [str(truncated)]),
        (["fast", str(style), str(photos / "photo0.png"), "-o", str(tmp_path / "x.png")], [str(style)]),
        (["fast", str(net), str(photos / "photo0.png"), "-o", str(tmp_path)], ["is a folder"]),
        (["export", str(truncated), "--format", "pt2", "-o", str(tmp_path / "x.pt2")], [str(truncated)]),
        (["export", str(net), "--format", "pt2", "-o", str(tmp_path)], ["is a folder"]),
        (["inspect", str(pickled)], ["pickle"]),
    ]
    before = sorted(tmp_path.rglob("*"))
    for argv, fragments in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, *fragments)
    assert sorted(tmp_path.rglob("*")) == before


def test_export_without_onnx_says_what_to_install(inputs, tmp_path, capsys, monkeypatch):
    _, _, net = inputs
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    assert main(["export", str(net), "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    _one_line_error(capsys, "pip install guided[export]")
    assert not (tmp_path / "x.onnx").exists()


def test_help_is_fast_and_reads_defaults_from_the_api():
    from guided.fast.config import TrainConfig

    done = subprocess.run([sys.executable, "-c", ("import sys; from guided.cli import train, fast, export; "
                                                 "print('torch' in sys.modules)")],
                          capture_output=True, text=True, env=ENV, timeout=120, check=False)
    assert done.stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-m", "guided", "train", "--help"], capture_output=True, text=True,
                          env=ENV, timeout=120, check=False)
    d = TrainConfig()
    text = " ".join(done.stdout.split())  # argparse wraps lines anywhere
    assert f"(default {d.iterations})" in text and f"(default {d.width})" in text
