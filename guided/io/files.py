"""Files written so that nothing is ever half-written, and files named by their content.

`atomic_write` is the one way guided writes a file: a hidden temporary file in the same folder
(so the rename cannot cross file systems), flushed and fsynced, then `os.replace`d over the target
and the folder fsynced. A crash leaves either the old file or the new one, never a mix; a killed
writer leaves at most a hidden `.NAME.XXXXXXXX.tmp` (batch runs delete those on restart).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO


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


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], object]) -> Path:
    """Replace `path` with `data` (bytes, text as UTF-8, or a function writing to a binary file)."""
    path = Path(path)
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
