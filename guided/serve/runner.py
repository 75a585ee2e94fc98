"""Run one job: the same library calls as the CLI (`Stylizer.run`, `guided.gatys.stylize`, the fast
stylizer, `guided.compare.compare`), with a per-step hook that records progress, losses and a
preview, and that ends the run when the job is cancelled or the server stops."""
from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from guided.serve.store import JobRecord, JobStore

logger = logging.getLogger(__name__)

#: Stable Diffusion 1.x latents -> approximate RGB: a fixed linear map, so a preview costs no VAE
#: decode (the community's usual factors for SD 1.x's four latent channels).
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
#: Long side of the per-step preview: enough to see the picture form, a few kB per step.
PREVIEW_SIDE = 256


class JobCancelled(Exception):
    """Raised inside a run by its step hook: the job was cancelled or the server is stopping."""


@dataclass
class Control:
    """What the worker and the API share about the job being run."""

    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = "cancelled by the user"
    preview: bytes | None = None  # the latest preview PNG


@dataclass
class Outcome:
    image: Image.Image
    metadata: dict
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _png(image: Image.Image) -> bytes:
    """The preview as PNG bytes, its long side `PREVIEW_SIDE` (small latents enlarged pixel by pixel)."""
    scale = PREVIEW_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def latents_preview(latents) -> Image.Image:
    """An approximate picture of SD latents (1, C, h, w) without decoding."""
    import torch

    x = latents[0].detach().float().cpu()
    if x.shape[0] == len(LATENT_RGB):
        rgb = torch.einsum("chw,cr->rhw", x, torch.tensor(LATENT_RGB))
        rgb = (rgb + 1) / 2
    else:  # another latent space (tiny test models): its first three channels, min-max scaled
        rgb = x[:3] if x.shape[0] >= 3 else x[:1].repeat(3, 1, 1)
        rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min() + 1e-8)
    return Image.fromarray((rgb.clamp(0, 1).permute(1, 2, 0) * 255).byte().numpy())


def _finite(values: dict) -> dict:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Runner:
    """Runs jobs of every method; models load once, on first use, through `stylizer()`."""

    def __init__(self, store: JobStore, *, stylizer: Callable[[], object], nets, tiny: bool):
        self.store = store
        self.stylizer = stylizer
        self.nets = nets
        self.tiny = tiny
        self._scheduler: str | None = None  # the scheduler the Stylizer was loaded with, once known

    def run(self, record: JobRecord, control: Control) -> Outcome:
        paths = self.store.input_paths(record)
        from guided.io.images import load_image

        content = load_image(paths[0], what="content image")
        styles = [load_image(p, what="style image") for p in paths[1:]]
        method = getattr(self, f"_{record.method}")
        return method(record, control, content, styles)

    # -- hooks -----------------------------------------------------------------------------------
    def _step(self, record: JobRecord, control: Control, step: int, total: int | None, losses: dict,
              preview: Callable[[], Image.Image] | None) -> None:
        if control.cancel.is_set():
            raise JobCancelled(control.reason)
        self.store.update(record, persist=False, step=step, total=total)
        self.store.add_losses(record, {"step": step, **_finite(losses)})
        if preview is not None:
            try:
                control.preview = _png(preview())
            except Exception as exc:  # noqa: BLE001 - a preview must never end a run
                logger.debug("no preview at step %d: %s", step, exc)

    # -- methods ---------------------------------------------------------------------------------
    def _stylize(self, record: JobRecord, control: Control, content, styles) -> Outcome:
        stylizer = self.stylizer()
        self._scheduler = self._scheduler or stylizer.scheduler
        # A job without `scheduler` runs on the server's, not on the one the previous job chose.
        options = {"scheduler": self._scheduler, **record.options}

        def on_step(pipe, i, t, kwargs):
            total = getattr(pipe, "_num_timesteps", None)
            self._step(record, control, i + 1, total, pipe.step_losses,
                       lambda: latents_preview(kwargs["latents"]))
            return {}

        result = stylizer.run(content, style=styles, callback_on_step_end=on_step, **options)
        return Outcome(result.image, result.metadata, list(result.notes))

    def _gatys(self, record: JobRecord, control: Control, content, styles) -> Outcome:
        from guided.compare.run import TINY_GATYS_ITERATIONS
        from guided.gatys.presets import get_preset, override
        from guided.gatys.transfer import stylize
        from guided.io.images import tensor_to_pil

        options = dict(record.options)
        stylizer = self.stylizer()
        # The server's device and precision, as compare does: Accelerate's state is process-wide, and a
        # preset's own precision (a user preset may ask for bf16) would otherwise change it under the Stylizer's feet.
        options.update(device=str(stylizer.accelerator.device), mixed_precision=stylizer.accelerator.mixed_precision)
        backbone = None
        if self.tiny:  # the tiny stylizer's random VGG: no download, nothing loaded twice
            from torch import nn

            backbone = nn.Sequential(*stylizer.guidance_models.vgg.body)
            options.setdefault("size", stylizer.native_size)
            options.setdefault("iterations", TINY_GATYS_ITERATIONS)
        preset_fields = {k: v for k, v in options.items() if k not in ("preset", "style_weights", "seed", "device")}
        total = override(get_preset(options.get("preset", "default")), **preset_fields).iterations

        def on_step(i, image01, losses):
            self._step(record, control, i, total, losses, lambda: tensor_to_pil(image01))  # i counts from 1

        result = stylize(content, styles, backbone=backbone, progress=False, callback=on_step, **options)
        metadata = dict(result.metadata)
        if self.tiny:
            metadata["random_backbone"] = True
        notes = ([f"stopped early: {result.stop_reason}"] if result.stopped_early else []) + list(result.notes)
        return Outcome(result.image, metadata, notes)

    def _fast(self, record: JobRecord, control: Control, content, styles) -> Outcome:
        options = dict(record.options)
        image, metadata = self.nets.run(options["net"], content, size=options.get("size"),
                                        preserve_color=bool(options.get("preserve_color", False)))
        self._step(record, control, 1, 1, {}, None)
        return Outcome(image, metadata)

    def _compare(self, record: JobRecord, control: Control, content, styles) -> Outcome:
        import tempfile

        from guided.compare import compare

        options = dict(record.options)
        stylizer = self.stylizer()
        self._step(record, control, 0, None, {}, None)
        with tempfile.TemporaryDirectory(dir=self.store.folder(record.id)) as tmp:
            report = compare(content, styles=styles, stylizer=stylizer, tiny=stylizer.tiny,
                             out_dir=Path(tmp) / "report", **options)
            grid = Image.open(report.out_dir / "grid.png").convert("RGB")
            rows = [{k: v for k, v in row.items() if k in ("name", "label", "metrics")} for row in report.rows]
        self._step(record, control, 1, 1, {}, None)
        metadata = {"kind": "compare", "parameters": options, "rows": rows, "smoke": report.smoke}
        return Outcome(grid, metadata, list(report.notes), {"rows": rows})

