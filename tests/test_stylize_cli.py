"""`guided stylize` from the command line: the manifest round trip (`--from`), `guided inspect`,
every preset running one tiny step, and bad input (one line, exit 2, no output, no traceback)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guided.cli import main
from guided.demo.assets import demo_photo
from guided.guidance.presets import list_presets
from guided.io.images import read_metadata, save_image

GUIDED = [sys.executable, "-m", "guided"]
PRESET_NAMES = [p.name for p in list_presets()]


@pytest.fixture
def shared_load(monkeypatch, stylizer):
    """`Stylizer.load` returns the module's tiny Stylizer: in-process CLI runs skip reloading."""
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return save_image(demo_photo().resize((80, 96)), tmp_path_factory.mktemp("in") / "photo.png")


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(GUIDED + args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_from_reruns_the_recorded_image_and_inspect_shows_it(photo, tmp_path, capsys, stylizer, monkeypatch):
    from guided.stylize import Stylizer

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    real_load = Stylizer.load
    # a.png from the module's Stylizer; b.png from a fresh load, as a second invocation would do.
    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    assert main(["stylize", str(photo), "--prompt", "an ink wash painting of a portrait", "--tiny",
                 "--steps", "4", "--strength", "0.5", "--seed", "7", "--gram-weight", "0.25", "-o", str(a)]) == 0
    assert a.is_file() and Path(f"{a}.json").is_file()
    monkeypatch.setattr(Stylizer, "load", real_load)
    # --from fills everything from a.png's manifest: prompt, steps, strength, weights, seed, tiny models.
    assert main(["stylize", str(photo), "--from", str(a), "-o", str(b)]) == 0
    assert np.array_equal(_pixels(a), _pixels(b))
    meta_a, meta_b = read_metadata(a), read_metadata(b)
    assert meta_b["seed"] == meta_a["seed"] == 7
    assert meta_b["parameters"] == meta_a["parameters"]
    capsys.readouterr()
    assert main(["inspect", str(a)]) == 0
    shown = capsys.readouterr().out
    for needle in ("kind: stylize", "seed: 7", "prompt: an ink wash painting of a portrait", "strength: 0.5",
                   "steps: 4", "gram: 0.25", "ai_generated: True", "losses:"):
        assert needle in shown, needle


def test_from_with_a_changed_seed_gives_another_image(photo, tmp_path, shared_load):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["stylize", str(photo), "--prompt", "a pencil sketch", "--tiny", "--steps", "2",
                 "--strength", "0.5", "-o", str(a)]) == 0
    assert main(["stylize", str(photo), "--from", str(a), "--seed", "1", "-o", str(b)]) == 0
    assert read_metadata(b)["seed"] == 1
    assert not np.array_equal(_pixels(a), _pixels(b))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_runs_one_tiny_step(stylizer, name):
    preset = next(p for p in list_presets() if p.name == name)
    steps = math.ceil(1 / preset.strength)  # strength x steps = one denoising step
    result = stylizer.run(demo_photo(), preset=name, steps=steps, size=32)
    assert len(result.loss_history) == 1
    assert result.image.size[0] >= 8 and max(result.image.size) <= 40
    assert result.metadata["parameters"]["preset"] == name
    assert result.metadata["parameters"]["prompt"] == preset.prompt
    assert result.final_losses and all(math.isfinite(v) for v in result.final_losses.values())
    for term, weight in preset.weights.items():
        assert result.metadata["parameters"]["guidance"][term] == weight


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("guided: error:") and "Traceback" not in err[0]
    return err[0]


def test_malformed_preset_names_file_and_field(photo, tmp_path, capsys, shared_load):
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({"description": "x", "prompt": "x", "negative_prompt": "", "weights": {}}))
    out = tmp_path / "out.png"
    assert main(["stylize", str(photo), "--preset", str(bad), "--tiny", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "broken.json" in line and "`strength`" in line
    assert not out.exists()


def test_unknown_preset_name_lists_the_known_ones(photo, tmp_path, capsys, shared_load):
    out = tmp_path / "out.png"
    assert main(["stylize", str(photo), "--preset", "ink-wahs", "--tiny", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "unknown preset 'ink-wahs'" in line and "did you mean 'ink-wash'" in line
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--prompt", ""], "`--prompt` is empty"),
    (["--prompt", "x", "--strength", "0"], "`--strength` must be in (0, 1], got 0.0"),
    (["--prompt", "x", "--steps", "0"], "`--steps` must be in [1, 999], got 0"),
    (["--prompt", "x", "--style", "MISSING"], "style image '"),
    (["--prompt", "x", "--style", "CORRUPT"], "corrupt.png"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(photo, tmp_path, capsys, monkeypatch, argv, needle):
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: pytest.fail("models loaded")))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    argv = [str(tmp_path / "missing.jpg") if a == "MISSING" else str(corrupt) if a == "CORRUPT" else a for a in argv]
    out = tmp_path / "out.png"
    assert main(["stylize", str(photo), "--tiny", *argv, "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert needle in line
    assert all(Path(a).name in line for a in argv if a.endswith((".jpg", ".png")))  # the bad file is named
    assert not out.exists() and not Path(f"{out}.json").exists()


def test_unknown_scheduler_is_rejected_by_the_parser(photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(photo), "--prompt", "x", "--scheduler", "warp-drive", "-o", str(out)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--scheduler" in last and "warp-drive" in last and "Traceback" not in last
    assert not out.exists()


def test_console_error_has_no_traceback(photo, tmp_path):
    out = tmp_path / "out.png"
    proc = _run(["stylize", str(photo), "--prompt", "x", "--style", str(tmp_path / "nope.png"), "-o", str(out)],
                tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "nope.png" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("option", [["--backbone", "vgg16"], ["--clip", "ViT-B-16"], ["--model", "some/folder"]])
def test_tiny_models_refuse_named_models(photo, tmp_path, capsys, option):
    out = tmp_path / "out.png"
    assert main(["stylize", str(photo), "--prompt", "x", "--tiny", *option, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"`{option[0][2:]}`" in err[0] and option[1] in err[0]
    assert not out.exists()


def test_from_restores_recorded_options_unless_given(tmp_path):
    import argparse

    from PIL import Image

    from guided.cli import build_parser
    from guided.cli.stylize import apply_recorded
    from guided.io.images import save_image

    recorded = tmp_path / "recorded.png"
    save_image(Image.new("RGB", (8, 8)), recorded, metadata={
        "kind": "stylize", "seed": 7,
        "parameters": {"prompt": "ink wash", "scheduler": "euler", "strength": 0.4, "steps": 9, "tiny": True,
                       "style": [], "guidance": {"gram": 0.25, "mode": "full"}, "model": "/models/sd15",
                       "clip": "ViT-B-16:openai", "backbone": "/weights/vgg16.safetensors",
                       "mixed_precision": "bf16"}})
    args = build_parser().parse_args(["stylize", "photo.jpg", "--from", str(recorded), "--steps", "3", "-o", "x.png"])
    assert isinstance(args, argparse.Namespace)
    apply_recorded(args)
    assert (args.prompt, args.scheduler, args.strength, args.seed, args.tiny) == ("ink wash", "euler", 0.4, 7, True)
    assert (args.gram_weight, args.mode) == (0.25, "full")
    assert args.steps == 3  # given on the command line: wins over the recording
    assert (args.model, args.clip, args.backbone, args.mixed_precision) == (
        "/models/sd15", "ViT-B-16:openai", "/weights/vgg16.safetensors", "bf16")
    given = build_parser().parse_args(["stylize", "photo.jpg", "--from", str(recorded), "--backbone", "vgg19",
                                       "--mixed-precision", "no", "-o", "x.png"])
    apply_recorded(given)
    assert (given.backbone, given.mixed_precision, given.clip) == ("vgg19", "no", "ViT-B-16:openai")
