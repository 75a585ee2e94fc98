"""Video stylization without flicker: every paradigm frame by frame, kept consistent along the optical flow.

`source` reads a clip (PyAV: a video file or a GIF; or a folder of frames), `flow` computes DIS flow
and occlusion masks (OpenCV), `methods` and `gatys_method` stylize one frame given the previous output
warped onto it, `metric` measures Lai et al.'s warping error, `work` keeps finished frames across
runs, `encode` writes the H.264 MP4 with the input's audio, `run` ties them together.

    from guided.video import FastMethod, VideoConfig, stylize_video
    result = stylize_video("in.mp4", "out.mp4", FastMethod("mosaic.safetensors", temporal=0.5),
                           VideoConfig(size=640))
    print(result.warping_error)

PyAV and OpenCV are the optional extra `video` (`pip install guided[video]`); nothing here imports
them, or torch, until a clip is read.
"""
from __future__ import annotations

import importlib

_LAZY = {"stylize_video": "run", "VideoConfig": "run", "VideoResult": "run", "FastMethod": "methods",
         "StylizeMethod": "methods", "GatysMethod": "gatys_method", "FlowConfig": "flow", "EncodeConfig": "encode",
         "open_video": "source", "warping_error": "metric"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"guided.video.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'guided.video' has no attribute {name!r}")
