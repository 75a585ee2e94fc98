"""`TrainConfig`: every setting of a fast-network training run, with the reason for each default.

Torch-free, so that `guided train --help` reads its defaults from here without importing torch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.validate import integer, number

#: Channels of the three convolution stages. `full` is Johnson's network (1.68 M parameters),
#: `half` the half-width one his code ships "without sacrificing quality" (0.42 M).
WIDTHS: dict[str, tuple[int, int, int]] = {"full": (32, 64, 128), "half": (16, 32, 64)}
#: Files a training run writes next to its network (`NET.curves.png`, `NET.samples.png`): never training data,
#: even when the network is written into the photo folder.
SIDE_FILE_SUFFIXES = (".curves.png", ".samples.png")


def check_input_noise(value: object) -> float:
    """`value` as the std of a network's input noise (pixel range 0-1), or a GuidedError naming it."""
    return number(value, "input_noise", low=0.0, high=1.0)


@dataclass
class TrainConfig:
    """Everything that shapes a training run; `guided train` reads its defaults from here."""

    # Steps of one global batch. Johnson: "at least 10,000 iterations" on COCO; 2000 steps of 256 px batch 4
    # are ~3 h on a quiet 2-core CPU (~5 s a step, bench/README.md) and minutes on a GPU: a starting point.
    iterations: int = 2000
    # Alternative to `iterations`: passes over the photos (iterations = ceil(epochs * photos / batch)).
    epochs: float | None = None
    # 256 px crops, batch 4, Adam 1e-3: pytorch/examples fast_neural_style and Johnson et al.
    image_size: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    # The last `decay_fraction` of the steps decay the learning rate linearly to `final_lr_factor` x lr:
    # small batches leave noisy weights; a short anneal settles them (a pure function of the step).
    decay_fraction: float = 0.2
    final_lr_factor: float = 0.1
    # Long side of the painting for its Gram targets (None: `image_size`, the scale the crops are seen at).
    style_size: int | None = None
    # "half" by default: 4x fewer parameters, 512x512 in 0.334 s on a quiet 2-core CPU where "full" takes
    # 0.839 s (the budget is 0.4 s; bench/README.md, "Fast networks"); Johnson found half width costs
    # little quality (not re-measured here).
    width: str = "half"
    # Standard deviation of the fixed noise pattern added to the input (pixel range 0-1), in training and
    # in every use of the network (see guided.fast.network). 0 = Johnson's network.
    input_noise: float = 0.0
    # Term weights, on terms divided by `term_scales` (O(1) at the start). Gram 6 vs content 1: with the
    # real VGG-16, scored against Gatys on photos not used in training (bench/README.md), gram 4 paints
    # too little style on both paintings measured (mosaic: Gram 1.26-1.38x Gatys'; autumn-oak: up to
    # 1.88x), gram 6 less so (mosaic: all within 1.25x; autumn-oak: up to 1.46x) while content stays
    # within 1.25x. TV 0.01 only removes speckle (< 1 % of the objective).
    gram: float = 6.0
    content: float = 1.0
    tv: float = 1e-2
    # CLIP terms, used only with a prompt (clip_text) or clip_style > 0; they need CLIP weights.
    clip_text: float = 1.0
    clip_style: float = 0.0
    prompt: str | None = None
    style_weights: Sequence[float] | None = None
    backbone: str | None = None  # see guided.models.vgg.resolve_backbone (None: $GUIDED_VGG_WEIGHTS, else vgg19)
    seed: int = 0
    # "bf16" helps on GPUs and CPUs with bf16 units; on AVX2-only CPUs it is far slower (bench/README.md).
    mixed_precision: str = "no"
    channels_last: bool = False  # NHWC for the network; the frozen VGG is ~90 % of a step, so it matters little
    checkpoint_every: int = 200  # a crash loses at most this many steps (~15 min at 256 px on a quiet 2-core CPU)
    sample_every: int = 200  # loss-curve PNG and sample grid next to the output
    workers: int = 2  # loader processes: decoding and resizing photos overlaps the step
    device: str | None = None
    cutouts: int = 2  # CLIP crops per image (see GuidanceConfig.cutouts)
    # ReReVST's temporal loss on synthetic flow (guided.fast.temporal): 0 = off, as Johnson trains. It costs
    # one more network pass per step; with 10, a mosaic network's warping error fell 52-70% on two clips at < 3%
    # of style distance (bench/README.md, video). Off by default: its effect on still images is not measured yet.
    temporal_weight: float = 0.0

    def validate(self) -> TrainConfig:
        def positive_int(name: str, minimum: int = 1) -> None:
            integer(getattr(self, name), name, low=minimum)

        for name in ("iterations", "batch_size", "checkpoint_every", "sample_every"):
            positive_int(name)
        positive_int("image_size", 32)
        positive_int("workers", 0)
        if self.style_size is not None:
            positive_int("style_size", 16)
        if self.epochs is not None and not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise GuidedError(f"`epochs` must be a positive number, got {self.epochs!r}")
        if self.width not in WIDTHS:
            raise GuidedError(f"`width` must be one of {', '.join(WIDTHS)}, got {self.width!r}")
        check_input_noise(self.input_noise)
        for name in (*GUIDANCE_TERMS, "lr", "temporal_weight"):
            value = getattr(self, name)
            number(value, name, low=0.0, low_open=name == "lr")
        if not 0 <= self.decay_fraction <= 1 or not 0 < self.final_lr_factor <= 1:
            raise GuidedError(f"`decay_fraction` must be in [0, 1] and `final_lr_factor` in (0, 1], got "
                              f"{self.decay_fraction!r}, {self.final_lr_factor!r}")
        from guided.accel import check_mixed_precision

        self.mixed_precision = check_mixed_precision(self.mixed_precision, self.device)
        return self

    def total_steps(self, photos: int) -> int:
        if self.epochs is None:
            return self.iterations
        return max(1, math.ceil(self.epochs * photos / self.batch_size))

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate of 0-based `step`: constant, then a linear decay over the last steps."""
        start = total * (1 - self.decay_fraction)
        if step < start or total <= start:
            return self.lr
        frac = (step - start) / (total - start)
        return self.lr * (1 - frac * (1 - self.final_lr_factor))
