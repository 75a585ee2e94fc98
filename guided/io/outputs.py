"""Output safety, checked once before any work starts: no output overwrites an input, every output
folder is writable, every image format can hold the requested size.

Every command (gatys, stylize, compare, batch, train, fast, export, video, the web service) calls
`check_outputs` with everything it will write and everything it reads, so a mistake costs one line
and no compute, and nothing is ever lost: the check writes nothing but a probe file it removes.
"""
from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from guided.constants import FORMAT_MAX_SIDE, SAVE_FORMATS
from guided.errors import GuidedError
from guided.io.files import inside

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """One thing a command will write: an image, another file, or a folder."""

    path: Path
    option: str = "--output"  # how the user named it, for the message
    kind: str = "image"  # "image" (suffix and size checked), "file" or "folder"
    long_side: int | None = None  # the largest side in pixels the image will have, when known
    suffixes: tuple[str, ...] = ()  # for kind "file": the allowed suffixes (empty: any)
    replaces: bool = False  # for kind "folder": the whole folder is replaced (so no input may live in it)


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse, before any work, an output that is one of `inputs`, in a folder that cannot be
    written, or an image whose format cannot hold its size. One `GuidedError` line naming the
    option and the path; nothing is written (a probe file is created and removed)."""
    sources = [Path(p).expanduser() for p in inputs if p is not None and not _is_in_memory(p)]
    for out in outputs:
        path = Path(out.path).expanduser()
        _check_kind(path, out)
        for source in sources:
            if _same_file(path, source):
                raise GuidedError(f"`{out.option}` '{path}' is one of the inputs ('{source}'): it would be "
                                  "overwritten; choose another output path")
            if out.replaces and inside(source, path):
                raise GuidedError(f"`{out.option}` '{path}' holds an input ('{source}') and would be replaced "
                                  "as a whole; choose another output folder")
        _check_writable(path if out.kind == "folder" else path.parent, out.option, path)


def _is_in_memory(value) -> bool:
    return not isinstance(value, (str, os.PathLike))


def _check_kind(path: Path, out: Output) -> None:
    if out.kind == "folder":
        if path.exists() and not path.is_dir():
            raise GuidedError(f"`{out.option}` '{path}' exists and is not a folder")
        return
    if path.is_dir():
        raise GuidedError(f"`{out.option}` '{path}' is a folder; give a file name")
    if out.kind == "file":
        if out.suffixes and path.suffix.lower() not in out.suffixes:
            raise GuidedError(f"`{out.option}` '{path}' must end in {' or '.join(out.suffixes)}")
        return
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise GuidedError(f"`{out.option}` '{path}' must end in {', '.join(SAVE_FORMATS)}")
    limit = FORMAT_MAX_SIDE[fmt]
    if out.long_side is not None and out.long_side > limit:
        raise GuidedError(f"`{out.option}` '{path}': {fmt} holds at most {limit} px a side and the image "
                          f"would be {out.long_side} px; save as .png or lower --size")


def _same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file: by inode when both exist, else by resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_writable(folder: Path, option: str, path: Path) -> None:
    """The nearest existing folder must be a folder we can create files in: probe, then remove."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GuidedError(f"`{option}` '{path}': '{existing}' is not a folder")
    probe = existing / f".guided-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise GuidedError(f"`{option}` '{path}': cannot write in '{existing}' ({exc.strerror or exc})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)
