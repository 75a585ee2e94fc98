"""Intentional copies are marked diffusers' way and stay equal to their source.

A function or class that is a deliberate copy (diffusers' one-file pipelines prefer a copy to a hasty
abstraction) carries, on the line above its `def`/`class`, a comment

    # Copied from pipelines.pipeline_guided_img2img.GuidedStableDiffusionImg2ImgPipeline.method with A->B

naming its source by import path, optionally with `A->B` replacements (comma-separated) that turn the
source into the copy, as diffusers' `utils/check_copies.py` reads them. Everything else that is shared
has one owner (`pipelines/guided_sampling.py` for the pipelines).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^\s*# Copied from ([\w.]+)(?: with (.+))?$")


def _resolve(dotted: str):
    """The object at `dotted`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"nothing importable in {dotted!r}")


def _body(source: str) -> str:
    """A definition's source without its decorators' marker comments, dedented."""
    lines = [line for line in textwrap.dedent(source).splitlines() if not MARKER.match(line)]
    return "\n".join(lines).strip()


def copy_drift(path: Path) -> list[str]:
    """'file:line source' for each marked copy in `path` that no longer equals its source."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    drift = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        match = MARKER.match(lines[first - 2]) if first >= 2 else None
        if not match:
            continue
        source = _body(inspect.getsource(_resolve(match[1])))
        for pair in (match[2] or "").split(","):
            if "->" in pair:
                old, new = (s.strip() for s in pair.split("->", 1))
                source = source.replace(old, new)
        copy = _body("\n".join(lines[first - 1:node.end_lineno]))
        if copy != source:
            drift.append(f"{path.relative_to(path.parents[1])}:{first} {match[1]}")
    return drift


def test_every_marked_copy_equals_its_source():
    files = [p for package in ("guided", "pipelines") for p in sorted((ROOT / package).rglob("*.py"))]
    drift = [d for path in files for d in copy_drift(path)]
    assert not drift, "marked copies that differ from their source:\n" + "\n".join(drift)


def test_the_copy_check_sees_a_drift_and_applies_replacements(tmp_path, monkeypatch):
    package = tmp_path / "copies_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "source.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    copy = package / "copy.py"
    copy.write_text("# Copied from copies_probe.source.shout with shout->yell\ndef yell(text):\n"
                    "    return text.upper() + '!'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("copies_probe", None)
    assert copy_drift(copy) == []
    copy.write_text("# Copied from copies_probe.source.shout with shout->yell\ndef yell(text):\n"
                    "    return text.lower() + '!'\n")
    assert copy_drift(copy) == [f"{copy.relative_to(copy.parents[1])}:2 copies_probe.source.shout"]  # the def line
