"""Presets of the classic Gatys path: every default of `guided.gatys.stylize` lives here.

A preset is a frozen dataclass whose fields carry a comment saying *why* that value. The
`stylize()` keyword arguments default to None, meaning "the preset's value", and the CLI reads
its defaults from here too, so the three cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from guided.constants import MAX_SIDE
from guided.errors import GuidedError
from guided.validate import number

OPTIMIZERS = ("adam", "lbfgs", "prox")
# Step size and schedule an optimizer gets when a run switches to it from its preset's optimizer:
# Adam the chapter's lr 0.3 with StepLR(50, 0.8); L-BFGS full quasi-Newton steps, no schedule;
# proximal gradient (guided.gatys.prox) a first step of RMS 0.01 on the normalised image (its
# backtracking then finds the step size, so this only sets where the search starts).
OPTIMIZER_DEFAULTS: dict[str, dict] = {"adam": {"lr": 0.3, "lr_step": 50, "lr_gamma": 0.8},
                                       "lbfgs": {"lr": 1.0, "lr_step": 0},
                                       "prox": {"lr": 0.01, "lr_step": 0}}
INITS = ("content", "noise", "style-stats")


@dataclass(frozen=True)
class GatysPreset:
    """The objective and the optimisation of one classic style-transfer run."""

    name: str
    description: str
    # Layer choice of Dive into Deep Learning §14.12: vgg19().features indices 0,5,10,19,28 (style)
    # and 25 (content: conv4_4, "the last convolutional layer of the fourth block"). Its in-place
    # ReLUs make 0,5,10,19,25 post-ReLU; 28 is the last kept module, so it stays pre-ReLU.
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1")
    content_layers: tuple[str, ...] = ("relu4_4",)
    # False: the chapter's absolute MSEs. True: each layer's MSE divided by its target's mean square,
    # so one set of weights suits any backbone (random VGG activations are ~100x smaller).
    relative_losses: bool = False
    # Per-style-layer multipliers (None: 1 each, the chapter's plain sum over layers).
    layer_weights: tuple[float, ...] | None = None
    # The chapter's weights: content 1, style 1e4, TV 10 (its losses are means, hence the large style weight).
    content_weight: float = 1.0
    style_weight: float = 1e4
    tv_weight: float = 10.0
    # (h, w) is an exact resize (the chapter's 300x450, aspect not kept); an int is the long side.
    size: int | tuple[int, int] = (300, 450)
    # None: the style image is resized to exactly the content's (h, w), as the chapter does; a
    # number: style long side = style_scale x content long side, aspect kept.
    style_scale: float | None = None
    # The chapter starts from the (normalised) content image: it converges fastest to a stylised photo.
    init: str = "content"
    optimizer: str = "adam"
    # Adam lr 0.3 in normalised units, the chapter's value.
    lr: float = 0.3
    # StepLR(step_size=50, gamma=0.8), the chapter's schedule; 0 disables it.
    lr_step: int = 50
    lr_gamma: float = 0.8
    # Total iterations over all scales (the chapter: 500 at one scale).
    iterations: int = 500
    # Number of coarse-to-fine scales, each half the size of the next (1: single scale).
    multiscale: int = 1
    # Fraction of `iterations` spent at the final scale when multiscale > 1, the rest split evenly
    # over the coarse scales (None: all scales get an equal share).
    final_fraction: float | None = None
    # The chapter computes in float32; bf16 is an opt-in speed-up.
    mixed_precision: str = "no"
    # Luminance-only transfer keeps the photo's colours; the chapter transfers colour too.
    preserve_color: bool = False
    # torchvision VGG's max pooling, as the chapter uses; "avg" is what Gatys et al. preferred.
    pool: str = "max"

    def long_side(self) -> int:
        """The largest side of the result in pixels (an (h, w) size gives its larger value)."""
        return max(self.size) if isinstance(self.size, tuple) else self.size

    def help(self, name: str) -> str:
        """The value of a field for CLI help texts."""
        return str(getattr(self, name))


D2L = GatysPreset(
    name="d2l",
    description="Dive into Deep Learning §14.12 exactly as its PyTorch code runs: VGG-19, "
                "300x450, Adam lr 0.3, 500 iterations, StepLR(50, 0.8).",
)

D2L_FAST = replace(
    D2L,
    name="d2l-fast",
    description="The d2l objective (same layers, weights, normalisation, TV, 300x450) reached sooner: "
                "accelerated proximal gradient with an exact step on the total variation, 100 iterations.",
    # Measured on this objective (bench/README.md, "d2l-fast on pairs it was not tuned on"): Adam's
    # fixed step oscillates around the kinks of the L1 total variation and L-BFGS stalls on them;
    # forward-backward splitting steps exactly onto them (guided.gatys.prox). With a random VGG-19
    # (TV-dominated) it passes the chapter's 500-step loss within ~10 iterations on every pair
    # tried; with the real VGG-16 (the chapter's weights on ImageNet features: style-dominated) after
    # 42-68 on the pairs tried. 100 leaves a margin for both; the whole run then takes ~0.4-0.6 of the
    # chapter's time (an iteration costs ~2-3 of Adam's: backtracking and restarts), and ends 82-95 %
    # below the chapter's loss on a random VGG-19.
    optimizer="prox",
    lr=0.01,  # the first step's RMS move; the backtracking finds the step size from there
    lr_step=0,
    iterations=100,
    # float32: the backtracking compares objective values, which bf16 would blur.
    mixed_precision="no",
)

DEFAULT = replace(
    D2L,
    name="default",
    description="For users with real VGG weights: 512 px long side, aspect kept, L-BFGS, two scales, "
                "content relu4_2, relative (scale-free) losses.",
    size=512,
    style_scale=1.0,
    # relu4_2, Gatys et al.'s content layer: it exists in VGG-16 too (relu4_4 is VGG-19 only), and
    # keeps the photo's layout while leaving texture free.
    content_layers=("relu4_2",),
    optimizer="lbfgs",
    lr=1.0,
    lr_step=0,
    # L-BFGS settles in ~100 evaluations; 90 at 256 px are cheap, 60 at 512 px refine the detail.
    iterations=150,
    multiscale=2,
    final_fraction=0.4,
    # Relative losses: the same weights work on ImageNet VGG-16/19 and on the random test network
    # (absolute Gram MSEs are ~1e6 with ImageNet VGG-16 and ~1e-9 with random VGG-19).
    relative_losses=True,
    # By eye on rainier + autumn-oak with the real VGG-16 at 256 px: relative style weight 30 or 5
    # buries the mountain under texture; lower keeps the layout under the brush strokes.
    style_weight=2.0,
    # Relative content/style terms are O(1); TV on the normalised image starts near 1.5, so 1e-2
    # smooths speckle without flattening strokes.
    tv_weight=1e-2,
)

PRESETS: dict[str, GatysPreset] = {p.name: p for p in (DEFAULT, D2L, D2L_FAST)}


def get_preset(name: str | GatysPreset) -> GatysPreset:
    """A preset by name (or the preset itself)."""
    if isinstance(name, GatysPreset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise GuidedError(f"`preset` must be one of {', '.join(PRESETS)}, got {name!r}") from None


def check_preset(p: GatysPreset) -> GatysPreset:
    """Validate every field of a (possibly overridden) preset; errors name the option and value."""
    if p.optimizer not in OPTIMIZERS:
        raise GuidedError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {p.optimizer!r}")
    if p.init not in INITS:
        raise GuidedError(f"`init` must be one of {', '.join(INITS)}, got {p.init!r}")
    number(p.iterations, "iterations", low=0, high=1_000_000, integer=True)
    number(p.multiscale, "multiscale", low=1, high=8, integer=True)  # 8 halvings: a 16 px coarsest scale at 2048
    if p.style_scale is not None:
        number(p.style_scale, "style_scale", low=0, high=16, low_open=True)
    number(p.lr_step, "lr_step", low=0, integer=True)
    number(p.lr_gamma, "lr_gamma", low=0, high=1, low_open=True)
    if p.final_fraction is not None:
        number(p.final_fraction, "final_fraction", low=0, high=1, low_open=True)
    if not p.style_layers and not p.content_layers:
        raise GuidedError("`style_layers` and `content_layers` are both empty")
    if p.layer_weights is not None and len(p.layer_weights) != len(p.style_layers):
        raise GuidedError(f"`layer_weights` has {len(p.layer_weights)} entries for "
                          f"{len(p.style_layers)} style layers {list(p.style_layers)}")
    for i, w in enumerate(p.layer_weights or ()):
        number(w, f"layer_weights[{i}]", low=0)
    for name in ("content_weight", "style_weight", "tv_weight", "lr"):
        number(getattr(p, name), name, low=0)
    check_size(p.size)
    return p


def check_size(size: object) -> int | tuple[int, int]:
    """An int long side or an (h, w) pair of positive ints."""
    if isinstance(size, bool):
        raise GuidedError(f"`size` must be a positive int or (h, w), got {size!r}")
    if isinstance(size, int):
        return number(size, "size", low=16, high=MAX_SIDE, integer=True)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= MAX_SIDE for v in size):
        return (int(size[0]), int(size[1]))
    raise GuidedError(f"`size` must be a long side or (h, w), each an integer in [16, {MAX_SIDE}], got {size!r}")


def override(p: GatysPreset, **options: object) -> GatysPreset:
    """The preset with every option that is not None replaced, validated."""
    known = {f.name for f in fields(p)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise GuidedError(f"unknown preset option(s) {unknown}")
    chosen = {k: v for k, v in options.items() if v is not None}
    if chosen.get("optimizer", p.optimizer) != p.optimizer and "lr" not in chosen:
        # Another optimizer than the preset's: its own step size and schedule, not the preset's.
        chosen = {**OPTIMIZER_DEFAULTS.get(chosen["optimizer"], {}), **chosen}
    if isinstance(chosen.get("size"), list):
        chosen["size"] = tuple(chosen["size"])
    if isinstance(chosen.get("layer_weights"), list):
        chosen["layer_weights"] = tuple(chosen["layer_weights"])
    return check_preset(replace(p, **chosen))


__all__ = ["GatysPreset", "PRESETS", "D2L", "D2L_FAST", "DEFAULT", "get_preset", "override",
           "check_size", "OPTIMIZERS", "INITS"]
