"""Classic neural style transfer (Gatys et al. 2016; Dive into Deep Learning §14.12).

`transfer` holds the optimisation, `images` the pre/post-processing and the image pyramid,
`presets` the named schedules (`d2l`, `d2l-fast`, `default`).

    from guided.gatys import stylize
    result = stylize("photo.jpg", ["painting.jpg"], preset="default")
"""
from guided.gatys.presets import DEFAULT, PRESETS, GatysPreset, get_preset
from guided.gatys.transfer import GatysObjective, GatysResult, plot_history, stylize

__all__ = ["DEFAULT", "PRESETS", "GatysObjective", "GatysPreset", "GatysResult", "get_preset", "plot_history",
           "stylize"]
