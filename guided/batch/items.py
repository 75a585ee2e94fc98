"""Which files a batch works on, and what each output is called.

Discovery is deterministic: the same folder gives the same list, in the same order, on every
process of a distributed run (sorted relative POSIX paths).

Output names keep the whole input name, extension included, and add a label (the preset, or the
method when no preset is named): `photos/a.jpg` with preset `ink-wash` becomes
`photos/a.jpg.ink-wash.png`. Because the label has no dot, the input path and the label can be read
back from the name, so two different (input, label) pairs can never share an output, `a.png` and
`a.jpg` included. Names that differ only by case are refused up front: they would collide on
case-insensitive file systems (macOS, Windows).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from guided.errors import GuidedError

# A label names outputs and ends up in file names: letters, digits, '-' and '_' only (no dot, so
# that `<input>.<label>.png` stays unambiguous; no '/', so it cannot move the file).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
OUTPUT_SUFFIX = ".png"


@dataclass(frozen=True)
class BatchItem:
    """One unit of work: an input image (relative to INPUT_DIR) stylized under one label."""

    input: str  # relative POSIX path under INPUT_DIR
    label: str  # preset name, or the method when no preset is named
    output: str  # relative POSIX path under OUTPUT_DIR


def image_extensions(formats) -> frozenset[str]:
    """The lower-case file extensions (with dot) that Pillow maps to one of `formats`."""
    from PIL import Image

    wanted = {str(f).upper() for f in formats}
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt.upper() in wanted)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def find_images(root: str | Path, *, extensions: frozenset[str], recursive: bool = False,
                exclude: str | Path | None = None) -> list[str]:
    """Relative POSIX paths of the image files under `root`, sorted.

    Hidden names (starting with '.') are skipped, files and folders alike. A symlinked file is
    taken only when its target lies inside `root`; symlinked folders are never entered (one inside
    the tree is walked through its real path anyway; one leading outside must not be followed).
    Only `extensions` are kept: the loader decides about the content later. `exclude` (the output
    folder, when it sits inside the input folder) is not walked, so outputs never become inputs.
    """
    root = Path(root)
    if not root.is_dir():
        raise GuidedError(f"`INPUT_DIR` '{root}' is not a folder")
    real_root = root.resolve()
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[str] = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if entry.is_dir() or not _inside(target, real_root) or not target.is_file():
                        continue
                elif entry.is_dir(follow_symlinks=False):
                    if recursive and (skip is None or Path(entry.path).resolve() != skip):
                        pending.append((Path(entry.path), f"{rel}/"))
                    continue
                elif not entry.is_file(follow_symlinks=False):
                    continue
                if os.path.splitext(entry.name)[1].lower() in extensions:
                    found.append(rel)
    return sorted(found)


def check_label(label: str) -> str:
    """`label` if it can be part of an output name, else a GuidedError naming it."""
    if not LABEL_PATTERN.fullmatch(label):
        raise GuidedError(f"preset name {label!r} cannot name outputs: use letters, digits, '-' and '_'")
    return label


def output_name(input_rel: str, label: str) -> str:
    """The output path (relative to OUTPUT_DIR) of `input_rel` under `label`."""
    return f"{input_rel}.{check_label(label)}{OUTPUT_SUFFIX}"


def plan_items(inputs: list[str], labels: list[str]) -> list[BatchItem]:
    """Every (input, label) pair in input order then label order, with collision-free outputs."""
    if len(set(labels)) != len(labels):
        raise GuidedError(f"`--preset` names a preset twice: {','.join(labels)}")
    items = [BatchItem(rel, label, output_name(rel, label)) for rel in inputs for label in labels]
    seen: dict[str, str] = {}
    for item in items:
        key = item.output.casefold()
        if key in seen:
            raise GuidedError(f"inputs '{seen[key]}' and '{item.input}' differ only by letter case; their "
                              f"outputs would collide on case-insensitive file systems: rename one")
        seen[key] = item.input
    return items
