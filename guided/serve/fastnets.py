"""Fast networks for `/api/v1/fast`, `/api/v1/nets` and the Fast tab: the one place the server
touches `guided.fast`.

The interface used: `guided.fast.FastStylizer.load(path)` gives a callable network;
`network(image, size=..., preserve_color=...)` returns an object with `.image` (PIL) and
`.metadata` (the manifest). Networks are files directly inside the `--nets` folder, `.safetensors`
or `.onnx`, named by the client only by their file name, which must be one of the listed ones; the
path is resolved and must still lie inside the folder (a symlink pointing out is refused).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from guided.errors import GuidedError
from guided.io.files import inside

logger = logging.getLogger(__name__)

#: File types a network may have: weights only (safetensors) or a graph (ONNX); never a pickle.
NET_SUFFIXES = (".safetensors", ".onnx")


class FastUnavailable(GuidedError):
    """The fast path cannot run here (no `guided.fast`, or no `--nets` folder): a 503."""


class FastNets:
    """The networks of one `--nets` folder (or none), each loaded once on first use."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder).resolve() if folder is not None else None
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def why_unavailable(self) -> str | None:
        if self.folder is None:
            return "no fast networks: start the server with --nets FOLDER (.safetensors or .onnx files)"
        return None

    def names(self) -> list[str]:
        """File names of the networks directly inside the folder (symlinks out of it left out)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.suffix.lower() in NET_SUFFIXES and not p.name.startswith(".") and p.is_file()
                      and inside(p, self.folder))

    def path(self, name: str) -> Path:
        """The file of network `name`: one of `names()`, resolved inside the folder."""
        if self.folder is None or name not in self.names():
            raise GuidedError(f"`net` must be one of {', '.join(self.names()) or '(none)'}, got {name!r}")
        path = self.folder / name
        if not inside(path, self.folder):
            raise GuidedError(f"`net` {name!r} does not lie inside the --nets folder")
        return path

    def run(self, name: str, image, *, size: int | None = None, preserve_color: bool = False):
        """Stylize `image` (PIL) with network `name`; returns (PIL image, manifest)."""
        reason = self.why_unavailable()
        if reason:
            raise FastUnavailable(reason)
        path = self.path(name)
        try:
            with self._lock:
                network = self._loaded.get(name)
                if network is None:
                    from guided.fast import FastStylizer

                    network = self._loaded[name] = FastStylizer.load(path)
            result = network(image, size=size, preserve_color=preserve_color)
        except GuidedError as exc:  # said to a client: the network by its name, never the server's folders
            raise type(exc)(self.public(str(exc), name)) from None
        return result.image, result.metadata

    def public(self, message: str, name: str) -> str:
        """`message` with this folder's paths replaced by the network's name and `--nets` (the folder is
        kept resolved, and networks are loaded from inside it, so that is the one spelling to replace)."""
        folder = str(self.folder)
        return message.replace(f"{folder}/{name}", name).replace(folder, "--nets")
