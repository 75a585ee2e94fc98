"""`guided models --download`: fetch the default weights a feature is missing, saying first what
and how much, then showing progress. Where they come from is a `Source`: the internet (the Hugging
Face Hub and download.pytorch.org; refused with `HF_HUB_OFFLINE`/`GUIDED_OFFLINE`/`--offline`), or a
local mirror folder (`--mirror DIR`, for machines without internet; the tests use one).

A mirror holds each Hub repository as `DIR/<org>/<name>/<files>` and each torch hub file as
`DIR/<file name>` (`vgg19-dcbb9e9d.pth`). Fetched files land where the loaders look: the Hugging
Face cache and the torch hub cache, so `guided models` shows them present afterwards.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from guided.errors import GuidedError, WeightsNotFoundError
from guided.models.checkpoints import offline

logger = logging.getLogger(__name__)

#: Features `--download` takes; "all" is every one of them.
FEATURES = ("stylize", "gatys", "compare", "all")


@dataclass
class Item:
    """One thing to fetch: a Hub repository (`files` empty: the whole snapshot) or a URL's file."""

    component: str
    kind: str  # "hub" or "url"
    source: str  # repo id or URL
    files: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    size: int | None = None  # bytes, once known


def plan(feature: str = "all") -> list[Item]:
    """What is missing for `feature` (its required rows of `guided models`), one item per source."""
    from guided.constants import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
    from guided.models.clip import _hub_repo_of_tag
    from guided.models.status import model_status
    from guided.models.vgg import URLS

    if feature not in FEATURES:
        raise GuidedError(f"`--download` must be one of {', '.join(FEATURES)}, got {feature!r}")
    items: dict[str, Item] = {}
    for row in model_status():
        if row.present or not row.required or feature not in ("all", row.feature):
            continue
        if row.component.startswith("CLIP"):
            repo, files, _ = _hub_repo_of_tag(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
            item = Item(row.component, "hub", repo, files[:1])
        elif row.source.startswith("torchvision"):
            arch = "vgg19" if "19" in row.component else "vgg16"
            item = Item(row.component, "url", URLS[arch])
        else:
            item = Item(row.component, "hub", row.source)
        items.setdefault(item.source, item).features.append(row.feature)
    return list(items.values())


def describe(items: Iterable[Item]) -> list[str]:
    """One line per item and the total: what `--download` says before it fetches."""
    items = list(items)
    lines = [f"- {i.component} ({i.source}) for {', '.join(sorted(set(i.features)))}: {_mb(i.size)}" for i in items]
    known = sum(i.size or 0 for i in items)
    unknown = any(i.size is None for i in items)
    lines.append(f"total: {_mb(known)}{' plus files of unknown size' if unknown else ''}")
    return lines


def _mb(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 1e6:,.1f} MB"


class HubSource:
    """The internet: the Hugging Face Hub and torch hub URLs."""

    name = "the internet"
    online = True

    def size(self, item: Item) -> int | None:
        try:
            if item.kind == "hub":
                from huggingface_hub import HfApi

                info = HfApi().model_info(item.source, files_metadata=True)
                return sum(s.size or 0 for s in info.siblings or [] if not item.files or s.rfilename in item.files)
            import urllib.request

            with urllib.request.urlopen(urllib.request.Request(item.source, method="HEAD"), timeout=30) as r:
                return int(r.headers.get("content-length") or 0) or None
        except Exception as exc:  # noqa: BLE001 - a size we cannot learn is said as unknown
            logger.debug("size of %s unknown: %s", item.source, exc)
            return None

    def fetch(self, item: Item) -> None:
        if item.kind == "url":
            import torch

            from guided.models.checkpoints import torch_hub_checkpoint

            target = torch_hub_checkpoint(item.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(item.source, str(target), progress=True)
        elif item.files:
            from huggingface_hub import hf_hub_download

            for name in item.files:
                hf_hub_download(item.source, name)
        else:
            from guided.models.hub import _download

            _download(item.source, None, item.component)


class MirrorSource:
    """A local folder laid out as the module docstring says; needs no network."""

    online = False

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise GuidedError(f"`--mirror` '{self.folder}' is not a folder")
        self.name = f"the mirror {self.folder}"

    def _where(self, item: Item) -> Path:
        return self.folder / (item.source if item.kind == "hub" else os.path.basename(item.source))

    def _files(self, item: Item) -> list[Path]:
        where = self._where(item)
        if item.kind == "url":
            return [where] if where.is_file() else []
        if item.files:
            return [where / f for f in item.files if (where / f).is_file()]
        return sorted(p for p in where.rglob("*") if p.is_file()) if where.is_dir() else []

    def size(self, item: Item) -> int | None:
        files = self._files(item)
        return sum(f.stat().st_size for f in files) if files else None

    def fetch(self, item: Item) -> None:
        files = self._files(item)
        if not files:
            raise WeightsNotFoundError(f"{item.component} ({item.source}) is not in {self.name} "
                                       f"(expected {self._where(item)})")
        if item.kind == "url":
            from guided.models.checkpoints import torch_hub_checkpoint

            _copy(files[0], torch_hub_checkpoint(item.source))
            return
        from huggingface_hub import constants

        repo_dir = Path(constants.HF_HUB_CACHE) / ("models--" + item.source.replace("/", "--"))
        revision = hashlib.sha1("\n".join(str(f) for f in files).encode()).hexdigest()
        root = self._where(item)
        for f in files:
            _copy(f, repo_dir / "snapshots" / revision / f.relative_to(root))
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(revision)


def _copy(src: Path, dst: Path) -> None:
    from guided.io.files import atomic_write

    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh:
        atomic_write(dst, lambda out: shutil.copyfileobj(fh, out, 2 ** 20))


def download(feature: str = "all", *, source=None, refuse_online: bool = False,
             say: Callable[[str], None] = print) -> list[Item]:
    """Fetch what `feature` is missing from `source` (default: the internet), saying what and how
    big first, then each item as it comes. Online fetching is refused when downloads are off."""
    source = source or HubSource()
    items = plan(feature)
    if not items:
        say(f"nothing to download: everything {feature} needs is here")
        return []
    refused = source.online and (refuse_online or offline())
    for item in items:
        item.size = None if refused else source.size(item)  # learning a size online is a connection too
    say(f"{'would fetch' if refused else 'fetching'} from {source.name}:")
    for line in describe(items):
        say("  " + line)
    if refused:
        why = "--offline" if refuse_online else "HF_HUB_OFFLINE/GUIDED_OFFLINE is set"
        raise WeightsNotFoundError(f"downloads are off ({why}); nothing was fetched. Run it where the internet "
                                   "is reachable, or copy the files and use --mirror DIR")
    for n, item in enumerate(items, 1):
        say(f"[{n}/{len(items)}] {item.component} ({item.source}) ...")
        source.fetch(item)
        say(f"[{n}/{len(items)}] {item.component}: done")
    return items
