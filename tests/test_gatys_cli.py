"""`guided gatys` as a user runs it: a subprocess that writes a PNG with its manifest, or fails in one line."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from guided.io.images import read_metadata

# One OpenMP thread: the CI machine's two cores are shared by many test processes.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def guided(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guided", "gatys", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    content, style = folder / "photo.png", folder / "paint.jpg"
    Image.radial_gradient("L").convert("RGB").resize((48, 40)).save(content)
    Image.effect_noise((40, 40), 60).convert("RGB").save(style)
    return content, style


def test_cli_writes_png_with_manifest_and_loss_curve(images, tmp_path):
    content, style = images
    out, curve = tmp_path / "out.png", tmp_path / "curve.png"
    proc = guided(content, style, style, "-o", out, "--preset", "d2l", "--size", "32", "--iterations", "3",
                  "--backbone", "vgg19-random", "--style-weights", "1,2", "--loss-curve", curve, "--seed", "7",
                  "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM" in proc.stderr  # the console says the backbone is random
    meta = read_metadata(out)
    assert meta["kind"] == "gatys" and meta["seed"] == 7 and meta["ai_generated"] is True
    assert meta["random_backbone"] is True and meta["models"]["backbone"]["random"] is True
    assert meta["parameters"]["preset"] == "d2l" and meta["parameters"]["style_weights"] == [1.0, 2.0]
    assert meta["parameters"]["iterations"] == 3 and len(meta["losses"]) == 3
    assert {"content", "style", "tv", "total"} <= set(meta["losses"][0])
    assert meta["precision"] == "no" and meta["seconds"] > 0
    with Image.open(out) as im:
        assert im.size == (32, 27)
    assert curve.stat().st_size > 0


def test_help_shows_the_preset_defaults():
    proc = guided("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "d2l 500" in text and "default" in text and "--mixed-precision" in text


@pytest.mark.parametrize("case", ["missing", "corrupt", "size", "preset", "iterations", "style_weights"])
def test_bad_input_one_line_exit_2_no_output(images, tmp_path, case):
    content, style = images
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out.png"
    args = {
        "missing": [tmp_path / "nothere.jpg", style],
        "corrupt": [content, corrupt],
        "size": [content, style, "--size", "big"],
        "preset": [content, style, "--preset", "picasso"],
        "iterations": [content, style, "--iterations", "-3"],
        "style_weights": [content, style, "--style-weights", "1,2"],
    }[case]
    proc = guided(*args, "-o", out, "--backbone", "vgg19-random", "--size" if case != "size" else "--quiet",
                  *(["32"] if case != "size" else []))
    assert proc.returncode == 2, (case, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guided: error:"), proc.stderr
    word = {"missing": "nothere.jpg", "corrupt": "corrupt.jpg", "size": "--size", "preset": "picasso",
            "iterations": "--iterations", "style_weights": "--style-weights"}[case]
    assert word in lines[0]
    assert not out.exists() and not list(tmp_path.glob("*.png*"))
