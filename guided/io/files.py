"""Files written so that nothing is ever half-written, and files named by their content.

`atomic_write` is the one way guided writes a file: a hidden temporary file in the same folder
(so the rename cannot cross file systems), flushed and fsynced, then `os.replace`d over the target
and the folder fsynced. A crash leaves either the old file or the new one, never a mix; a killed
writer leaves at most a hidden `.NAME.XXXXXXXX.tmp` (batch runs delete those on restart).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from guided.errors import GuidedError, one_line


def write_temp(target: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a hidden temporary file next to `target` and fsync it; return its path.

    Created with mode 0o666 so the umask decides permissions, as for any new file. For writers
    that publish several files together (an image and its sidecar): write each, then `os.replace`."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], object], *,
                 make_parents: bool = False) -> Path:
    """Replace `path` with `data` (bytes, text as UTF-8, or a function writing to a binary file).
    `make_parents`: create its folder first (an explicit output path), as image saving does."""
    path = Path(path).expanduser()
    if make_parents:
        if path.is_dir():
            raise GuidedError(f"cannot write '{path}': it is a directory")
        make_parent(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    write = data if callable(data) else (lambda fh: fh.write(data))
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def make_parent(path: Path) -> None:
    """Create the folder `path` goes in; a GuidedError naming it when that cannot be."""
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise GuidedError(f"cannot save '{path}': '{parent}' is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GuidedError(f"cannot create the folder for '{path}': {one_line(exc)}") from None


#: The hidden temporaries `write_temp` makes: `.NAME.XXXXXXXX.tmp`.
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")


def remove_stale_temps(folder: Path, *, target: str | None = None, recursive: bool = False) -> int:
    """Delete the temporaries a killed writer left in `folder` (below it too with `recursive`), only
    those of the file named `target` when given; returns how many."""
    removed = 0
    for path in (folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")):
        match = TEMP_NAME.fullmatch(path.name)
        if match and (target is None or match["name"] == target) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename durable; not possible on every platform, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, cached per (resolved path, size, mtime): a batch hashes each weights
    file once."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(resolved, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def inside(path: str | Path, folder: str | Path) -> bool:
    """True when `path`, symlinks resolved, lies inside `folder` (also resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(Path(os.path.realpath(folder)))
        return True
    except (ValueError, OSError):
        return False
