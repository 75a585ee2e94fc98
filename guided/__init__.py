"""guided: image stylization with guided Stable Diffusion img2img and classic neural style transfer.

Pure torch: importing `guided` never imports diffusers. The diffusers pipelines live in the
top-level `pipelines` package.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["GuidanceConfig", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import guided` stays light and the CLI's --help stays fast.
    if name == "GuidanceConfig":
        from guided.config import GuidanceConfig

        return GuidanceConfig
    raise AttributeError(f"module 'guided' has no attribute {name!r}")
