"""Every command, driven with the mistakes a careful new user makes: each is one line on stderr
(`guided: error: ...`, naming what is wrong), exit status 2, no traceback, and nothing written.

The commands run in-process through `guided.cli.main` (a traceback would surface as an exception
here), on the session's tiny Stylizer where a command loads models.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from factories import noise, waves

from guided.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mistakes")
    f = {"photo": folder / "photo.png", "style": folder / "style.png", "wide": folder / "wide.png",
         "batch_in": folder / "in", "text": folder / "notes.txt", "truncated": folder / "truncated.png"}
    waves(0, (64, 80)).save(f["photo"])
    waves(1, (48, 48)).save(f["style"])
    noise(2, (300, 40)).save(f["wide"])
    f["batch_in"].mkdir()
    noise(3).save(f["batch_in"] / "a.png")
    f["text"].write_text("not an image\n")
    f["truncated"].write_bytes(f["photo"].read_bytes()[:200])
    evil = folder / "evil.pth"  # a pickle whose payload would run code if unpickled unrestricted
    with open(evil, "wb") as fh:
        pickle.dump({"0.weight": torch.zeros(1), "payload": os.system}, fh)
    f["evil"] = evil
    safetensors_folder = folder / "weights"
    safetensors_folder.mkdir()
    f["folder"] = safetensors_folder
    return f


def _unwritable() -> Path:
    """A folder this process cannot create files in (root ignores permission bits, not sysfs)."""
    return Path("/sys") if os.geteuid() == 0 else Path("/proc/1")


GATYS_FAST = ["--backbone", "vgg19-random", "--iterations", "1", "--size", "32"]

# (command line with placeholders, words the error must contain). OUT is a fresh path in an empty
# folder; names in CAPS are the files above.
MISTAKES = [
    # output is one of the inputs
    (["gatys", "PHOTO", "STYLE", "-o", "PHOTO", *GATYS_FAST], "is one of the inputs"),
    (["gatys", "PHOTO", "STYLE", "-o", "STYLE", *GATYS_FAST], "is one of the inputs"),
    (["stylize", "PHOTO", "--style", "STYLE", "--tiny", "-o", "STYLE"], "is one of the inputs"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "-o", "PHOTO"], "is one of the inputs"),
    (["compare", "PHOTO", "--prompt", "x", "--tiny", "-o", "PHOTO"], "is not a folder"),
    (["batch", "BATCH_IN", "-o", "BATCH_IN", "--prompt", "x", "--tiny"], "BATCH_IN"),
    # unwritable output folder
    (["gatys", "PHOTO", "STYLE", "-o", "UNWRITABLE/out.png", *GATYS_FAST], "cannot write in"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "-o", "UNWRITABLE/out.png"], "cannot write in"),
    (["compare", "PHOTO", "--prompt", "x", "--tiny", "-o", "UNWRITABLE/report"], "cannot write in"),
    (["batch", "BATCH_IN", "-o", "UNWRITABLE/out", "--prompt", "x", "--tiny"], "cannot write in"),
    # output is a folder / a file where a folder is needed / an unknown format
    (["gatys", "PHOTO", "STYLE", "-o", "FOLDER", *GATYS_FAST], "is a folder"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "-o", "OUT.gif"], "must end in"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.tga", *GATYS_FAST], "must end in"),
    # a format's own size limit, before any compute
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.webp", "--backbone", "vgg19-random", "--size", "16384"],
     "WEBP holds at most 16383 px"),
    # pickled weights: refused in our words, never advice to turn weights_only off
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", "--backbone", "EVIL", "--iterations", "1", "--size", "32"],
     "pickle file"),
    (["batch", "BATCH_IN", "-o", "OUT_DIR", "--method", "gatys", "--style", "STYLE", "--backbone", "EVIL"],
     "pickle file"),
    # an aspect ratio the network cannot reach
    (["gatys", "WIDE", "STYLE", "-o", "OUT.png", "--backbone", "vgg19-random", "--size", "48"],
     "needs at least 16 px a side"),
    # numbers: NaN, infinity, out of range — each named with its value
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "--guidance-scale", "nan", "-o", "OUT.png"],
     "`--guidance-scale` must be a finite number"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "--guidance-scale", "inf", "-o", "OUT.png"],
     "`--guidance-scale` must be a finite number"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "--strength", "nan", "-o", "OUT.png"], "`--strength`"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "--gram-weight", "inf", "-o", "OUT.png"], "gram"),
    (["stylize", "PHOTO", "--prompt", "x", "--tiny", "--size", "100000", "-o", "OUT.png"], "`--size`"),
    (["compare", "PHOTO", "--prompt", "x", "--tiny", "--guidance-scale", "nan", "-o", "OUT_DIR"],
     "`--guidance-scale`"),
    (["compare", "PHOTO", "--prompt", "x", "--tiny", "--gatys-iterations", "0", "-o", "OUT_DIR"],
     "`--gatys-iterations`"),
    (["batch", "BATCH_IN", "-o", "OUT_DIR", "--prompt", "x", "--tiny", "--guidance-scale", "nan"],
     "`--guidance-scale`"),
    (["batch", "BATCH_IN", "-o", "OUT_DIR", "--method", "gatys", "--style", "STYLE", "--iterations", "-1"],
     "iterations"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--style-weight", "nan"], "`style_weight`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--content-weight", "inf"], "`content_weight`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--tv-weight", "-1"], "`tv_weight`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--style-scale", "nan"], "`style_scale`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--multiscale", "0"], "`multiscale`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--layer-weights", "1,1,1,1,nan"],
     "`layer_weights[4]`"),
    (["gatys", "PHOTO", "STYLE", "STYLE", "-o", "OUT.png", *GATYS_FAST, "--style-weights", "1,nan"],
     "`--style-weights`"),
    (["gatys", "PHOTO", "STYLE", "-o", "OUT.png", "--backbone", "vgg19-random", "--size", "0"], "`size`"),
    # inputs that are not images
    (["gatys", "TEXT", "STYLE", "-o", "OUT.png", *GATYS_FAST], "notes.txt"),
    (["stylize", "TRUNCATED", "--prompt", "x", "--tiny", "-o", "OUT.png"], "truncated.png"),
    (["compare", "MISSING.png", "--prompt", "x", "--tiny", "-o", "OUT_DIR"], "MISSING.png"),
    (["inspect", "TEXT"], "notes.txt"),
    (["inspect", "MISSING.png"], "MISSING.png"),
    (["stylize", "--from", "PHOTO", "-o", "OUT.png", "--tiny"], "has no guided metadata"),
    (["stylize", "--prompt", "x", "--tiny", "-o", "OUT.png"], "CONTENT is required"),
    (["stylize", "PHOTO", "--preset", "no-such-preset", "--tiny", "-o", "OUT.png"], "no-such-preset"),
]


def _resolve(argv: list[str], files: dict[str, Path], out_folder: Path) -> list[str]:
    names = {"PHOTO": files["photo"], "STYLE": files["style"], "WIDE": files["wide"], "TEXT": files["text"],
             "TRUNCATED": files["truncated"], "EVIL": files["evil"], "BATCH_IN": files["batch_in"],
             "FOLDER": files["folder"], "OUT_DIR": out_folder / "report"}
    resolved = []
    for arg in argv:
        if arg in names:
            resolved.append(str(names[arg]))
        elif arg.startswith("OUT."):
            resolved.append(str(out_folder / ("out" + arg[3:])))
        elif arg.startswith("UNWRITABLE/"):
            resolved.append(str(_unwritable() / arg.split("/", 1)[1]))
        elif arg == "MISSING.png":
            resolved.append(str(out_folder.parent / "MISSING.png"))
        else:
            resolved.append(arg)
    return resolved


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for folder in folders for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("argv, words", MISTAKES, ids=[f"{m[0][0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_user_mistake_is_one_line_exit_2_and_nothing_written(argv, words, files, tmp_path, capsys, monkeypatch,
                                                               stylizer):
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    before = _snapshot(files["photo"].parent)
    code = main(_resolve(argv, files, out_folder))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("guided: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    resolved_words = words.replace("BATCH_IN", str(files["batch_in"]))
    assert resolved_words in lines[0], lines[0]
    assert "weights_only" not in err  # never the advice to unpickle unrestricted
    assert list(out_folder.iterdir()) == [], "a refused run wrote something"
    assert _snapshot(files["photo"].parent) == before, "a refused run changed an input"


def test_the_inputs_survive_every_mistake(files):
    """The photo and the painting are intact after all of the above (nothing overwrote them)."""
    from PIL import Image

    assert Image.open(files["photo"]).size == (80, 64)
    assert Image.open(files["style"]).size == (48, 48)


def test_an_extreme_aspect_ratio_either_runs_or_is_refused_for_stylize(files, tmp_path, capsys, monkeypatch,
                                                                       stylizer):
    """A 300x40 photo at the smallest accepted size runs on the tiny models (no crash inside)."""
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    out = tmp_path / "wide.png"
    code = main(["stylize", str(files["wide"]), "--prompt", "x", "--tiny", "--steps", "2", "--size", "32",
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (code == 0 and out.is_file()) or (code == 2 and "needs at least" in err and not out.exists()), err


def test_inspect_escapes_control_characters(files, tmp_path, capsys):
    from guided.io.images import save_image

    image = tmp_path / "escapes.png"
    save_image(noise(0), image, metadata={"kind": "stylize", "parameters": {"prompt": "a\nfake: line\x1b[31m"}})
    assert main(["inspect", str(image)]) == 0
    out = capsys.readouterr().out
    prompt_lines = [line for line in out.splitlines() if "prompt" in line]
    assert prompt_lines == ["  prompt: a\\nfake: line\\x1b[31m"], out
    assert "\x1b" not in out


def test_from_without_content_uses_the_recorded_photo(files, tmp_path, capsys, monkeypatch, stylizer):
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    assert main(["stylize", str(files["photo"]), "--prompt", "x", "--tiny", "--steps", "2", "-o", str(first)]) == 0
    capsys.readouterr()
    assert main(["stylize", "--from", str(first), "-o", str(again)]) == 0
    assert str(files["photo"]) in capsys.readouterr().err  # it says which photo it took
    from PIL import Image

    assert Image.open(first).tobytes() == Image.open(again).tobytes()


PARSER_MISTAKES = [
    ["gatys", "--no-such-option"], ["stylize", "--no-such-option"], ["compare", "--no-such-option"],
    ["batch", "--no-such-option"], ["inspect", "--no-such-option"], ["presets", "--no-such-option"],
    ["models", "--no-such-option"], ["no-such-command"],
    ["gatys", "PHOTO"],  # a style image is required
    ["stylize", "PHOTO", "--strength", "a lot", "-o", "OUT.png"],
    ["stylize", "PHOTO", "--scheduler", "nope", "-o", "OUT.png"],
    ["batch", "BATCH_IN", "--method", "paint", "-o", "OUT_DIR"],
    ["compare", "PHOTO", "--prompt", "x"],  # -o is required
    ["gatys", "PHOTO", "STYLE", "-o", "OUT.png", "--iterations", "1.5"],
]


@pytest.mark.parametrize("argv", PARSER_MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(PARSER_MISTAKES)])
def test_a_malformed_command_line_is_argparse_usage_and_exit_2(argv, files, tmp_path, capsys):
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    with pytest.raises(SystemExit) as stop:
        main(_resolve(argv, files, out_folder))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.startswith("usage: guided") and err.strip().splitlines()[-1].startswith("guided"), err
    assert "error:" in err.strip().splitlines()[-1]
    assert list(out_folder.iterdir()) == []


@pytest.mark.parametrize("call", ["stylizer", "compare", "gatys"])
def test_the_python_api_refuses_a_nan_before_any_work(call, files, tmp_path, stylizer, monkeypatch):
    """The same validator behind the CLI guards the Python API: NaN is named, nothing is written."""
    from guided.errors import GuidedError

    if call == "stylizer":
        with pytest.raises(GuidedError, match="`guidance_scale` must be a finite number, got nan"):
            stylizer.run(files["photo"], prompt="x", guidance_scale=float("nan"))
    elif call == "compare":
        from guided.compare import compare

        monkeypatch.setattr(type(stylizer), "load", classmethod(lambda cls, **kw: pytest.fail("models loaded")))
        with pytest.raises(GuidedError, match="`guidance_scale` must be a finite number"):
            compare(files["photo"], prompt="x", guidance_scale=float("inf"), out_dir=tmp_path / "r")
    else:
        from guided.gatys import stylize

        with pytest.raises(GuidedError, match="`tv_weight` must be a finite number, got nan"):
            stylize(files["photo"], files["style"], backbone="vgg19-random", tv_weight=float("nan"))
    assert list(tmp_path.iterdir()) == []
