"""The jobs of `guided batch`: classic Gatys style transfer and guided Stable Diffusion stylization.

Each job validates its options when built (a mistake fails before any model loads), loads its
models once per process in `load()`, and stylizes one image per `run()`. `params(label)` lists
everything that changes an output, style images by content hash, so that a rerun redoes exactly
the items whose parameters changed.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guided.errors import GuidedError
from guided.validate import style_weights


def _file_hash(path: str | Path, what: str) -> str:
    from guided.io.files import sha256_file

    path = Path(path)
    if not path.is_file():
        raise GuidedError(f"{what} '{path}' does not exist")
    return sha256_file(path)


def _hashed_sources(sources: list[str], what: str) -> list[dict]:
    return [{"path": str(s), "sha256": _file_hash(s, what)} for s in sources]


@dataclass
class GatysJob:
    """Classic neural style transfer (`guided.gatys.stylize`) on every image, one output per preset."""

    styles: list[str]
    presets: tuple[str, ...] | None = None  # None: the API's default preset, outputs labelled "gatys"
    # Keyword options of `guided.gatys.stylize`; None means "the preset's value".
    options: dict = field(default_factory=dict)
    backbone: str | None = None
    seed: int = 0
    device: str | None = None
    method: str = "gatys"

    def __post_init__(self) -> None:
        import inspect

        from guided.gatys.presets import get_preset, override
        from guided.gatys.transfer import stylize

        if not self.styles:
            raise GuidedError("`--style` is required with --method gatys: give at least one style image")
        if self.options.get("style_weights") is not None:
            style_weights(self.options["style_weights"], len(self.styles), name="--style-weights")
        # Fail on a bad preset or option now, before any model loads or any item runs.
        default = inspect.signature(stylize).parameters["preset"].default
        for name in self.presets or (default,):
            override(get_preset(name), **{k: v for k, v in self.options.items() if k in _PRESET_FIELDS})
        self.labels = tuple(self.presets) if self.presets else (self.method,)
        self._style_hashes = _hashed_sources(self.styles, "style image")
        self._backbone_id = self._identify_backbone()
        self._net = None
        self._info = None
        self._style_images = None

    def _identify_backbone(self) -> dict:
        from guided.constants import ENV_VGG_WEIGHTS

        name = self.backbone or os.environ.get(ENV_VGG_WEIGHTS) or "vgg19"
        path = Path(name).expanduser()
        if path.is_file():
            from guided.models.checkpoints import load_state_dict

            load_state_dict(path)  # a bad or unsafe file is refused now, before the output folder exists
            return {"file": str(path), "sha256": _file_hash(path, "`--backbone` file")}
        return {"name": name}

    def params(self, label: str) -> dict:
        return {"preset": None if label == self.method else label, "options": self.options,
                "backbone": self._backbone_id, "seed": self.seed, "styles": self._style_hashes}

    def load(self) -> None:
        from guided.io.images import load_image
        from guided.models.vgg import resolve_backbone

        self._net, self._info = resolve_backbone(self.backbone, seed=self.seed)
        self._style_images = [load_image(s, what="style image") for s in self.styles]

    def run(self, image, label: str):
        from guided.gatys.transfer import stylize

        preset = {} if label == self.method else {"preset": label}
        result = stylize(image, self._style_images, backbone=self._net, seed=self.seed, device=self.device,
                         progress=False, **preset, **self.options)
        metadata = dict(result.metadata)
        # The network was handed over as a module; record where its weights really came from.
        metadata.setdefault("models", {})
        metadata["models"] = {**metadata["models"], "backbone": {**asdict(self._info),
                                                                  "description": self._info.describe()}}
        metadata["random_backbone"] = self._info.random
        metadata["styles"] = self._style_hashes
        return result.image, metadata


_PRESET_FIELDS = {"size", "iterations", "optimizer", "mixed_precision", "preserve_color"}


@dataclass
class StylizeJob:
    """Guided Stable Diffusion img2img (`guided.stylize.Stylizer`) on every image, one output per preset."""

    # Keyword arguments of `Stylizer.run` (prompt, style, strength, steps, guidance, seed, ...).
    run_options: dict
    # Keyword arguments of `Stylizer.load` (models, scheduler, device, mixed_precision).
    load_options: dict
    presets: tuple[str, ...] | None = None
    method: str = "stylize"

    def __post_init__(self) -> None:
        self.labels = tuple(self.presets) if self.presets else (self.method,)
        styles = self.run_options.get("style") or ()
        styles = [styles] if isinstance(styles, (str, Path)) else list(styles)
        self._style_hashes = _hashed_sources([str(s) for s in styles], "style image")
        self._preset_hashes = {name: self._preset_hash(name) for name in self.presets or ()}
        self._stylizer = None

    @staticmethod
    def _preset_hash(name: str) -> str | None:
        """The preset file's content hash (an unknown preset fails here, before any model loads);
        editing the preset redoes its items."""
        from guided.guidance.presets import load_preset

        path = load_preset(name).path
        return _file_hash(path, f"preset {name!r}") if path is not None else None

    def params(self, label: str) -> dict:
        options = {k: v for k, v in self.run_options.items() if k not in ("style", "preset")}
        preset = None if label == self.method else {"name": label, "sha256": self._preset_hashes[label]}
        return {"preset": preset, "run": options, "load": self.load_options, "styles": self._style_hashes}

    def load(self) -> None:
        try:
            from guided.stylize import Stylizer
        except ModuleNotFoundError as exc:
            if exc.name != "guided.stylize":
                raise
            raise GuidedError("--method stylize is not available yet in this version (guided.stylize "
                              "is missing); use --method gatys") from None
        self._stylizer = Stylizer.load(**self.load_options)

    def run(self, image, label: str):
        options = dict(self.run_options)
        if label != self.method:
            options["preset"] = label
        result = self._stylizer.run(image, **options)
        metadata = dict(result.metadata)
        metadata["styles"] = self._style_hashes
        return result.image, metadata


@dataclass
class FastJob:
    """A fast network from `guided train` (`guided.fast.apply.FastStylizer`) on every image: one pass each."""

    net: str
    size: int | None = None  # long side of the outputs (None: each photo's own size)
    preserve_color: bool = False
    mixed_precision: str | None = None
    device: str | None = None
    method: str = "fast"

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 8:
            raise GuidedError(f"`--size` must be at least 8 pixels with --method fast, got {self.size}")
        self.labels = (self.method,)
        self._hash = _file_hash(self.net, "`--net` network file")
        self._stylizer = None

    def params(self, label: str) -> dict:
        return {"net": {"file": str(self.net), "sha256": self._hash}, "size": self.size,
                "preserve_color": self.preserve_color, "mixed_precision": self.mixed_precision}

    def load(self) -> None:
        from guided.fast.apply import FastStylizer

        self._stylizer = FastStylizer.load(self.net, device=self.device, mixed_precision=self.mixed_precision)

    def run(self, image, label: str):
        result = self._stylizer(image, size=self.size, preserve_color=self.preserve_color)
        return result.image, result.metadata
