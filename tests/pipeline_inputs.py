"""Inputs and calls shared by the guided pipeline tests (SD and SDXL): a photo with structure, a
blocky painting, a call with some guidance weights, and the check every scheduler must pass."""
from __future__ import annotations

import numpy as np
import torch
from factories import painting as _painting
from factories import photo as _photo

from guided import GuidanceConfig
from guided.constants import GUIDANCE_TERMS

ZERO = {t: 0.0 for t in GUIDANCE_TERMS}
DEFAULT = GuidanceConfig()


def run(pipe, models, *, seed=0, steps=10, prompt="a painting", style=True, **guidance):
    """10 steps at strength 0.8 on `_photo()`, these guidance weights (the rest 0), numpy output."""
    return pipe(prompt=prompt, image=_photo(), strength=0.8, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(seed), output_type="np",
                style_image=_painting() if style else None, guidance=GuidanceConfig(**{**ZERO, **guidance}),
                guidance_models=models)


def assert_clip_text_guidance_lowers_it(pipe, models) -> None:
    """Guided by the prompt alone, the image is finite and closer to the prompt than unguided."""
    base = run(pipe, models, style=False)
    guided = run(pipe, models, style=False, clip_text=2.0)
    assert np.isfinite(guided.images).all()
    assert guided.final_losses["clip_text"] < base.final_losses["clip_text"]
