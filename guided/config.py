"""`GuidanceConfig`: what steers each denoising step, and how hard.

A plain dataclass (JSON via `dataclasses.asdict`) that validates itself on construction: a bad
value raises `GuidedError` naming the field and the value, before any model loads.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from guided.constants import FAST_DECODERS, GUIDANCE_TERMS, MIXED_PRECISION, MODES
from guided.errors import GuidedError
from guided.validate import integer, number

#: Gatys et al. (2016): the first ReLU of each block carries the style statistics.
DEFAULT_GRAM_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Gatys et al. used conv4_2; the post-ReLU map is smoother to guide with and keeps the same layout.
DEFAULT_CONTENT_LAYERS = ("relu4_2",)


@dataclass
class TermWindow:
    """The denoising steps where a term is active: fractions `start`..`end` of the steps, every N.

    Step `i` of `num_steps` (0-based) is active when `start <= i / num_steps < end` and it is a
    multiple of `every` steps after the first step of the window. `end=1.0` includes the last step.
    A window too narrow to hold any step of a short schedule is simply never active.
    """

    start: float = 0.0  # from the first step: guidance shapes the image while it is still noisy
    end: float = 1.0  # to the last step: later unguided steps would undo part of the guidance
    every: int = 1  # every step: cheaper schedules (every=2) halve the guidance cost

    def validate(self, name: str = "window") -> None:
        for key in ("start", "end"):
            value = getattr(self, key)
            number(value, f"{name}.{key}", low=0.0, high=1.0)
        if self.start > self.end:
            raise GuidedError(f"`{name}.start` ({self.start!r}) must not be after `{name}.end` ({self.end!r})")
        integer(self.every, f"{name}.every", low=1)

    def active(self, step: int, num_steps: int) -> bool:
        """Whether 0-based `step` of `num_steps` denoising steps falls in this window."""
        if num_steps < 1 or not 0 <= step < num_steps:
            return False
        first = math.ceil(self.start * num_steps - 1e-9)
        inside = first <= step and (step < self.end * num_steps - 1e-9 or self.end >= 1.0)
        return inside and (step - first) % self.every == 0


def _default_windows() -> dict[str, TermWindow]:
    # Every term on every step. img2img at strength < 1 already skips the noisiest steps, so few
    # steps remain, and a term switched off before the end is partly undone by the unguided rest.
    return {name: TermWindow() for name in GUIDANCE_TERMS}


@dataclass
class GuidanceConfig:
    """Weights, step windows and settings of the guidance objective.

    With `normalize_gradients` (the default) every term's gradient w.r.t. the decoded image is
    scaled to unit RMS before it is weighted, so a weight is the size of that term's push per
    pixel: weights compare across terms (whose raw losses differ by orders of magnitude) and across
    resolutions (RMS does not grow with the pixel count).
    """

    # Weights (0 turns a term off). Sizes relative to each other under unit-RMS normalisation.
    clip_text: float = 1.0  # the prompt is the main request of a stylization
    clip_style: float = 0.5  # CLIP's view of the painting: half the prompt, the Gram term carries texture
    gram: float = 1.0  # the painting's textures and colours, as strong as the prompt
    content: float = 0.5  # the photo's layout: img2img already starts from it, so a lighter hold
    # Smoothness against the high-frequency noise the other terms add. Half the prompt's push:
    # at 0.1-0.25 those terms outweighed it and the final TV ended above the unguided run's (tiny
    # test models, pipeline test `all terms together lower each`); at 0.5 all five terms go down.
    tv: float = 0.5
    windows: dict[str, TermWindow] = field(default_factory=_default_windows)
    # Unit-RMS gradient per term before weighting (see the class docstring). Off: one backward of
    # the weighted sum, cheaper, but weights must then be tuned to each loss's raw scale.
    normalize_gradients: bool = True
    # Measure each term's gradient RMS on every Nth guided step only; in between, the terms are
    # scaled by the last measured RMS and summed, one backward instead of one per term (single
    # images; batches always measure). 1 = measure every step, exact. 4: on five photo/painting
    # pairs the direction built from 1-3 steps old scales stayed within cosine 0.98 of the exact one
    # and the final losses within 0.3 % of an exact run's, while 3 of every 4 guided steps take one
    # backward instead of five (bench/guidance_drift.py; bench/README.md, "Guidance cost").
    norm_every: int = 4
    # Random crops CLIP sees (0: the whole image once). Several views make CLIP gradients less
    # adversarial, but each crop costs a CLIP forward and two backwards, the largest guidance cost
    # on CPU; 2 keeps `fast` mode near the unguided cost. Raise to 8-16 on a GPU.
    cutouts: int = 2
    cutout_augment: bool = True  # flips and noise on the cutouts: CLIP gradients become less adversarial
    mode: str = "fast"  # no UNet backward: the cost target of the project (full backprop costs several ×)
    # The guidance losses' decoder, in both modes (the name is from when only `fast` used it):
    # AutoencoderTiny where its weights are present, else the VAE at low resolution; "vae-lowres" forces
    # the VAE (full mode's decode through it costs ~12x the tiny decoder's on a CPU, bench/README.md).
    fast_decoder: str = "auto"
    # CLIP's input size and VGG's training scale; VGG cost grows with its pixels. The guidance
    # decode (full VAE, both modes) also comes out at this size: its cost grows with its pixels too.
    loss_size: int = 224
    # Autocast precision of the guidance decoder (tiny decoder or low-resolution VAE), of CLIP's
    # vision tower and of VGG in each guided step; targets, embeddings, Gram matrices, losses and the
    # reported final losses stay float32. "auto": bf16 where the device computes it in hardware
    # (AVX-512 BF16/AMX CPUs, recent GPUs), else float32. On such a CPU bf16 made the tiny decoder's
    # forward + input gradient 3.3x, VGG's 1.8x and CLIP's ~2x faster (CLIP's attention needs its
    # inputs laid out for it, guided.models.attention), with directions within cosine 0.999 of
    # float32 (bench/README.md, "Guidance cost"). "no" computes every guided step in the models' own precision.
    mixed_precision: str = "auto"
    gram_layers: tuple[str, ...] = DEFAULT_GRAM_LAYERS  # see DEFAULT_GRAM_LAYERS
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS  # see DEFAULT_CONTENT_LAYERS
    # Cutout randomness. None: taken from the pipeline's `generator` (so the one seed of a run also
    # decides the crops CLIP sees), or fresh when there is none; an int fixes the crops whatever the seed.
    seed: int | None = None

    def __post_init__(self) -> None:
        # JSON round trips give lists and dicts; accept them so asdict -> from_dict is lossless.
        self.gram_layers = tuple(self.gram_layers)
        self.content_layers = tuple(self.content_layers)
        windows = dict(_default_windows())
        for name, window in (self.windows or {}).items():
            windows[name] = TermWindow(**window) if isinstance(window, dict) else window
        self.windows = windows
        self.validate()

    def validate(self) -> None:
        """Raise `GuidedError` naming the first field with a bad value."""
        for name in GUIDANCE_TERMS:
            value = getattr(self, name)
            number(value, name, low=0.0)
        for name, window in self.windows.items():
            if name not in GUIDANCE_TERMS:
                raise GuidedError(f"`windows` has unknown term {name!r}; terms are {', '.join(GUIDANCE_TERMS)}")
            if not isinstance(window, TermWindow):
                raise GuidedError(f"`windows[{name!r}]` must be a TermWindow, got {type(window).__name__}")
            window.validate(f"windows[{name!r}]")
        if self.mode not in MODES:
            raise GuidedError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.fast_decoder not in FAST_DECODERS:
            raise GuidedError(f"`fast_decoder` must be one of {', '.join(FAST_DECODERS)}, got {self.fast_decoder!r}")
        if self.mixed_precision not in ("auto", *MIXED_PRECISION):
            raise GuidedError(f"`mixed_precision` must be one of auto, {', '.join(MIXED_PRECISION)}, "
                              f"got {self.mixed_precision!r}")
        integer(self.cutouts, "cutouts", low=0)
        integer(self.loss_size, "loss_size", low=32, high=4096)
        for key in ("gram_layers", "content_layers"):
            layers = getattr(self, key)
            if not layers or not all(isinstance(x, str) and x for x in layers):
                raise GuidedError(f"`{key}` must be a non-empty list of VGG layer names, got {layers!r}")
        if self.seed is not None:
            integer(self.seed, "seed")
        integer(self.norm_every, "norm_every", low=1)
        for key in ("normalize_gradients", "cutout_augment"):
            if not isinstance(getattr(self, key), bool):
                raise GuidedError(f"`{key}` must be true or false, got {getattr(self, key)!r}")

    @staticmethod
    def term_names() -> tuple[str, ...]:
        return GUIDANCE_TERMS

    def weight(self, name: str) -> float:
        if name not in GUIDANCE_TERMS:
            raise GuidedError(f"unknown guidance term {name!r}; terms are {', '.join(GUIDANCE_TERMS)}")
        return float(getattr(self, name))

    def weights(self) -> dict[str, float]:
        return {name: self.weight(name) for name in GUIDANCE_TERMS}

    def active_terms(self, step: int, num_steps: int) -> list[str]:
        """Terms with a weight > 0 whose window holds 0-based `step` of `num_steps`."""
        return [n for n in GUIDANCE_TERMS if self.weight(n) > 0 and self.windows[n].active(step, num_steps)]

    def replace(self, **changes) -> GuidanceConfig:
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready dict (same as `dataclasses.asdict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GuidanceConfig:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise GuidedError(f"unknown guidance setting(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**data)
