"""Tiny synthetic clips for the video tests: a textured scene panning a few pixels per frame, with a
tone as audio, written by PyAV in the test (no files from outside)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def scene(width: int = 160, height: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth random texture with edges (blurred noise plus a few rectangles), RGB uint8."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height // 4, width // 4, 3))
    big = np.kron(noise, np.ones((4, 4, 1)))
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        big = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, big)
    for _ in range(6):
        x, y = rng.integers(0, width - 20), rng.integers(0, height - 16)
        big[y:y + 12, x:x + 16] = rng.random(3)
    return (np.clip(big, 0, 1) * 255).astype(np.uint8)


def panning_frames(count: int = 10, width: int = 64, height: int = 48, step: int = 3) -> list[np.ndarray]:
    """`count` windows of `scene()` moving `step` px right per frame."""
    world = scene(width + step * count + 8, height + 8)
    return [np.ascontiguousarray(world[4:4 + height, 4 + i * step:4 + i * step + width]) for i in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], *, fps: int = 10, audio: bool = True,
               codec: str = "libx264", container: str | None = None) -> Path:
    """Encode `frames` (and a 440 Hz tone as long as the video, AAC) with PyAV."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if codec == "libx264" else video.pix_fmt
        sound = out.add_stream("aac", rate=44100) if audio else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            samples = int(44100 * len(frames) / fps)
            t = np.arange(samples) / 44100
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 44100, start
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def write_gif(path: Path, frames: list[np.ndarray], *, fps: int = 10) -> Path:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"frame{i + 1}.png")  # 1..N, natural order (frame10 after frame9)
    return folder


def random_network(path: Path, seed: int = 0) -> Path:
    """A real `half` TransformerNet with random weights saved at `path`: a per-frame network whose
    texture flickers with the input (not a stylization)."""
    import torch

    from guided.fast import TransformerNet, save_network

    torch.manual_seed(seed)
    return save_network(TransformerNet("half"), path, {"style": "random weights (test)"})
