"""guided: image stylization with guided Stable Diffusion img2img and classic neural style transfer.

Pure torch: importing `guided` never imports diffusers. The diffusers pipelines live in the
top-level `pipelines` package. The names below load on first use, so `import guided` (and
`guided --help`) stays light:

    guided.GuidanceConfig      what steers each denoising step (guided.config)
    guided.Stylizer            load the models once, stylize many photos (guided.stylize)
    guided.gatys_stylize       classic neural style transfer (guided.gatys.stylize)

and the subpackages' own entry points: `from guided.compare import compare`,
`from guided.batch import run_batch`, `from guided.testing import tiny_sd_components`.

Subpackages, by concern: `models` (VGG, CLIP, weights), `guidance` (the objective, style presets),
`gatys` (the classic path), `compare`, `batch`, `io` (images, manifests, plots), `cli`, `demo`.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute)
_LAZY = {
    "GuidanceConfig": ("guided.config", "GuidanceConfig"),
    "Stylizer": ("guided.stylize", "Stylizer"),
    "gatys_stylize": ("guided.gatys", "stylize"),
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'guided' has no attribute {name!r}")
