"""Classic neural style transfer (Gatys et al. 2016; Dive into Deep Learning §14.12).

`transfer` holds the optimisation, `images` the pre/post-processing and the image pyramid,
`presets` the named schedules (`d2l`, `d2l-fast`, `default`).

    from guided.gatys import stylize
    result = stylize("photo.jpg", ["painting.jpg"], preset="default")

The presets load without torch (the CLI's --help reads them); `stylize` and the other names of
`transfer` load on first use.
"""
from __future__ import annotations

import importlib

from guided.gatys.presets import DEFAULT, PRESETS, GatysPreset, get_preset

_LAZY = ("GatysObjective", "GatysResult", "plot_history", "stylize")

__all__ = ["DEFAULT", "PRESETS", "GatysPreset", "get_preset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module("guided.gatys.transfer"), name)
    raise AttributeError(f"module 'guided.gatys' has no attribute {name!r}")
