"""Finding the images in a folder: deterministic, so the same folder gives the same list in the same
order on every process of a distributed run (sorted relative POSIX paths). Used by batch, training
and `guided fast` on folders.
"""
from __future__ import annotations

import os
from pathlib import Path

from guided.errors import GuidedError
from guided.io.files import inside


def image_extensions(formats) -> frozenset[str]:
    """The lower-case file extensions (with dot) that Pillow maps to one of `formats`."""
    from PIL import Image

    wanted = {str(f).upper() for f in formats}
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt.upper() in wanted)


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
                    if entry.is_dir() or not inside(target, real_root) or not target.is_file():
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


__all__ = ["find_images", "image_extensions"]
