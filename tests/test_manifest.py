"""Manifests: JSON-safe conversion, versions and marker, file hashes, and `guided inspect`."""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from guided.errors import GuidedError
from guided.io.images import read_metadata, save_image
from guided.io.manifest import RESERVED_KEYS, build_manifest, describe_file, json_safe

ROOT = Path(__file__).resolve().parents[1]


def manifest(**overrides) -> dict:
    kwargs = dict(kind="gatys", parameters={"size": (300, 450), "style": Path("/in/style.jpg")},
                  seed=7, models={"backbone": "vgg19-random"}, device="cpu", precision="bf16",
                  losses={"style": [3.0, 1.0], "total": torch.tensor([4.0, 2.0])}, seconds=1.25)
    kwargs.update(overrides)
    return build_manifest(**kwargs)


# ------------------------------------------------------------------------------------ build
def test_manifest_has_every_field_and_is_strict_json():
    data = manifest(extra={"notice": "random weights"})
    assert data["kind"] == "gatys" and data["seed"] == 7
    assert data["ai_generated"] is True
    assert data["digital_source_type"] == "trainedAlgorithmicMedia"
    assert data["parameters"] == {"size": [300, 450], "style": "/in/style.jpg"}
    assert data["losses"] == {"style": [3.0, 1.0], "total": [4.0, 2.0]}
    assert data["device"] == "cpu" and data["precision"] == "bf16" and data["seconds"] == 1.25
    assert data["notice"] == "random weights"
    versions = data["versions"]
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
    for name in ("python", "guided", "torchvision", "diffusers", "transformers", "open_clip_torch",
                 "accelerate"):
        assert versions.get(name), name
    assert data["platform"]["system"]
    assert data["created"].endswith("+00:00")
    assert set(RESERVED_KEYS) <= set(data)
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN, no custom types


def test_extra_cannot_replace_a_field():
    with pytest.raises(ValueError, match="seed"):
        manifest(extra={"seed": 1})


def test_manifest_module_does_not_import_heavy_libraries():
    code = ("import sys, guided.io.manifest as m; m.build_manifest(kind='k', parameters={}, seed=None, "
            "models={}, device='cpu', precision='no'); "
            "print(sorted(x for x in ('torch', 'diffusers', 'transformers', 'open_clip') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------------------------------- json_safe
class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    path: Path = Path("/w/vgg.safetensors")
    window: tuple[float, float] = (0.0, 0.5)


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    weight: float = float("inf")


def test_json_safe_converts_every_supported_type():
    value = {
        "path": Path("a/b.png"), "tuple": (1, (2, 3)), "tensor0": torch.tensor(0.25),
        "tensor1": torch.tensor([1.0, 2.0]), "int_tensor": torch.tensor(3), "np_float": np.float32(0.5),
        "np_int": np.int64(4), "array": np.arange(3), "nan": float("nan"), "ninf": float("-inf"),
        "dataclass": Outer(), "set": {3, 1, 2}, "enum": Colour.RED, "dtype": torch.bfloat16,
        "device": torch.device("cpu"), 5: "int key", Path("k"): "path key", "bool": True, "none": None,
    }
    safe = json_safe(value)
    assert safe == {
        "path": "a/b.png", "tuple": [1, [2, 3]], "tensor0": 0.25, "tensor1": [1.0, 2.0],
        "int_tensor": 3, "np_float": 0.5, "np_int": 4, "array": [0, 1, 2], "nan": "nan",
        "ninf": "-inf", "dataclass": {"inner": {"path": "/w/vgg.safetensors", "window": [0.0, 0.5]},
                                      "weight": "inf"},
        "set": [1, 2, 3], "enum": "red", "dtype": "torch.bfloat16", "device": "cpu",
        "5": "int key", "k": "path key", "bool": True, "none": None,
    }
    assert type(safe["tensor0"]) is float and type(safe["np_int"]) is int
    json.dumps(safe, allow_nan=False)


def test_json_safe_falls_back_to_repr():
    class Thing:
        def __repr__(self) -> str:
            return "Thing()"

    assert json_safe([Thing()]) == ["Thing()"]


# ---------------------------------------------------------------------------- describe_file
def test_describe_file_hashes_and_notices_changes(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"first")
    info = describe_file(path)
    assert info == {"path": str(path.resolve()), "size": 5, "sha256": hashlib.sha256(b"first").hexdigest()}
    path.write_bytes(b"second!")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    assert describe_file(path)["sha256"] == hashlib.sha256(b"second!").hexdigest()


def test_describe_file_missing_names_it(tmp_path):
    with pytest.raises(GuidedError, match="nope.pth"):
        describe_file(tmp_path / "nope.pth")


def test_manifest_round_trips_through_a_saved_image(tmp_path):
    data = manifest()
    path = save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png", metadata=data)
    assert read_metadata(path) == data


# ------------------------------------------------------------------------------------- CLI
# Each `python -m guided` start costs seconds (the parser imports every command), so the real
# subprocess runs are few; the variants run `guided.cli.main` in-process.
def guided_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guided", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_inspect_prints_the_manifest(tmp_path):
    data = manifest(losses=[{"content": 2.0, "style": 5.0}, {"content": 1.5, "style": 2.5}])
    path = save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png", metadata=data)
    out = guided_cli("inspect", str(path))
    assert out.returncode == 0, out.stderr
    assert "kind: gatys" in out.stdout and "seed: 7" in out.stdout
    assert "ai_generated: True" in out.stdout and "trainedAlgorithmicMedia" in out.stdout
    assert "style: 2 values, first 5, last 2.5, min 2.5" in out.stdout


def test_inspect_bad_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "image.png"
    path.write_text("hello")
    out = guided_cli("inspect", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guided: error:") and "image.png" in lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_inspect_json_is_the_saved_manifest(tmp_path, capsys, suffix):
    from guided.cli import main

    data = manifest()
    path = save_image(Image.new("RGB", (8, 8)), tmp_path / f"out{suffix}", metadata=data)
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data


@pytest.mark.parametrize("case", ["no-metadata", "missing", "directory"])
def test_inspect_bad_input_in_process(tmp_path, capsys, case):
    from guided.cli import main

    path = tmp_path / "image.png"
    if case == "no-metadata":
        Image.new("RGB", (4, 4)).save(path)
    elif case == "directory":
        path.mkdir()
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guided: error:") and "image.png" in lines[0]
