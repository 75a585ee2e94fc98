"""The Python API behind `guided stylize`: load the models once, stylize many images.

    from guided.stylize import Stylizer
    stylizer = Stylizer.load()                      # real weights, or a clear error
    result = stylizer.run("photo.jpg", prompt="an oil painting", style=["painting.jpg"])
    result.image.save("out.png")

`Stylizer.load(tiny=True)` runs the same code on tiny random models: a labelled smoke test.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import PIL.Image

from guided import validate
from guided.config import GuidanceConfig
from guided.constants import SCHEDULER_NAMES
from guided.errors import GuidedError

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class StylizeDefaults:
    """Defaults of `Stylizer.run`, shared with the CLI (the CLI reads them from here).

    They differ from the pipeline's `__call__` defaults on purpose: the pipeline keeps diffusers'
    own (strength 0.8, 50 steps), because its users know them and expect a drop-in replacement of
    `StableDiffusionImg2ImgPipeline`; the app layer (CLI, Stylizer, compare, batch, web app) chooses
    for stylization of a photo: 0.6 keeps the photo's layout, and 30 steps x 0.6 = 18 guided steps
    cost about a third of diffusers' 50 x 0.8 = 40 while DDIM has converged by then.
    """

    strength: float = 0.6  # keeps the photo's layout while leaving room for the style (img2img's usual 0.5-0.75)
    steps: int = 30  # 30 x strength = 18 denoising steps, all guided: DDIM converges well by then
    guidance_scale: float = 7.5  # Stable Diffusion's customary classifier-free guidance
    scheduler: str = "ddim"  # deterministic, and the scheduler guidance is best understood on
    # Long side in pixels; None: the model's native resolution (UNet sample size x VAE factor: 512
    # for SD 1.5, 768 for SD 2 768-v, 1024 for SDXL, 64 for the tiny smoke-test models), where it
    # was trained and where its images look right.
    size: int | None = None
    seed: int = 0  # reproducible by default


DEFAULTS = StylizeDefaults()


def resolved_numbers(preset=None, *, strength: float | None = None, steps: int | None = None,
                     guidance_scale: float | None = None) -> tuple[float, int, float]:
    """(strength, steps, guidance_scale) a run uses: each as given, else the preset's, else `DEFAULTS`'."""
    def pick(given, from_preset, default):
        return given if given is not None else from_preset if from_preset is not None else default

    return (pick(strength, getattr(preset, "strength", None), DEFAULTS.strength),
            pick(steps, getattr(preset, "num_inference_steps", None), DEFAULTS.steps),
            pick(guidance_scale, getattr(preset, "guidance_scale", None), DEFAULTS.guidance_scale))


def check_denoising_steps(preset: str | Path | None = None, *, strength: float | None = None,
                          steps: int | None = None, cli: bool = False) -> None:
    """At least one denoising step with the strength and steps a run will use (given, else the preset's,
    else the defaults): checked before any model loads (CLI, REST API), not inside the run."""
    from guided.guidance.presets import load_preset

    strength, steps, _ = resolved_numbers(load_preset(preset) if preset else None, strength=strength, steps=steps)
    validate.diffusion_options(cli=cli, strength=strength, steps=steps)


@dataclass
class StylizeResult:
    """One stylized image and everything that produced it."""

    image: PIL.Image.Image
    metadata: dict
    final_losses: dict[str, float]
    loss_history: list[dict[str, float]]
    seconds: float
    notes: list[str] = field(default_factory=list)


def guidance_from(base: GuidanceConfig | dict | None, overrides: dict[str, Any] | None = None) -> GuidanceConfig:
    """A GuidanceConfig from a config or dict, with `overrides` (None values ignored) applied."""
    if isinstance(base, GuidanceConfig):
        config = base
    else:
        known = {f.name for f in fields(GuidanceConfig)}
        unknown = set(base or {}) - known
        if unknown:
            raise GuidedError(f"`guidance` has unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        config = GuidanceConfig(**(base or {}))
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    return config.replace(**changes) if changes else config


def resize_long_side(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Resize so the long side is `size` (aspect kept); the pipeline rounds to multiples of 8."""
    validate.integer(size, "size", low=32)
    w, h = image.size
    scale = size / max(w, h)
    return image.resize((max(8, round(w * scale)), max(8, round(h * scale))), PIL.Image.LANCZOS)


class Stylizer:
    """A guided img2img pipeline (Stable Diffusion 1.x/2.x or SDXL, chosen from the checkpoint's
    `model_index.json`) with its guidance models, loaded once, on an Accelerate device."""

    def __init__(self, pipe, guidance_models, *, accelerator, tiny: bool, model_info: dict,
                 scheduler: str = DEFAULTS.scheduler, load_options: dict | None = None):
        self.pipe = pipe
        self.guidance_models = guidance_models
        self.accelerator = accelerator
        self.tiny = tiny  # tiny random models built in code (a labelled smoke test)
        self.model_info = model_info
        self.scheduler = scheduler  # the name given to `load`, recorded in every manifest
        # `model`, `clip`, `backbone` as given to `load` (None: the default), recorded so that
        # `guided stylize --from` loads the same models again.
        self.load_options = dict(load_options or {})

    @classmethod
    def load(cls, *, tiny: bool = False, model: str | None = None, scheduler: str | None = None,
             device: str | None = None, mixed_precision: str | None = None,
             guidance: GuidanceConfig | None = None, clip: str | None = None,
             backbone: str | None = None) -> Stylizer:
        """Load Stable Diffusion (1.x/2.x or SDXL) and the guidance models. `tiny`: tiny random models
        built in code, labelled. SDXL fast mode decodes with TAESDXL where present.

        `clip`: open_clip "NAME", "NAME:TAG" or a local checkpoint; `backbone`: the guidance VGG, as
        `guided.models.vgg.resolve_backbone` takes it (None: $GUIDED_VGG_WEIGHTS, else VGG-19)."""
        from guided.accel import make_accelerator

        if not isinstance(tiny, bool):
            raise GuidedError(f"`tiny` must be true or false, got {tiny!r}")
        scheduler = scheduler or DEFAULTS.scheduler
        accelerator = make_accelerator(device, mixed_precision)  # validates before anything loads
        if scheduler not in SCHEDULER_NAMES:
            raise GuidedError(f"`scheduler` must be one of {', '.join(SCHEDULER_NAMES)}, got {scheduler!r}")
        from pipelines import GuidedStableDiffusionImg2ImgPipeline, GuidedStableDiffusionXLImg2ImgPipeline

        if tiny:
            given = {k: v for k, v in (("model", model), ("clip", clip), ("backbone", backbone)) if v is not None}
            if given:  # tiny models are built in code: a named model would be silently ignored
                key, value = next(iter(given.items()))
                raise GuidedError(f"`{key}` ({value!r}) cannot be used with tiny=True (tiny random models "
                                  "are built in code); drop one of them")
            from guided.testing import tiny_guidance_models, tiny_sd_components

            logger.warning("NOTICE: tiny RANDOM models (--tiny), a smoke test of the install; "
                           "the output is not a real stylization.")
            pipe = GuidedStableDiffusionImg2ImgPipeline(**tiny_sd_components(0))
            # No tiny decoder: a random AutoencoderTiny does not approximate the random VAE, so the
            # smoke run guides through the VAE at reduced resolution, the path real runs fall back to.
            gm = tiny_guidance_models(0, decoder=False)
            info = {"stable_diffusion": "tiny random (guided.testing.tiny_sd_components, seed 0)",
                    "family": "sd", "guidance": gm.info, "random": True}
        else:
            from guided.constants import DEFAULT_SD_MODEL, TINY_DECODERS
            from guided.models.hub import model_family, resolve_model_dir
            from guided.models.loaders import load_guidance_models

            source = model or DEFAULT_SD_MODEL
            folder = resolve_model_dir(source, what="Stable Diffusion model",
                                       required_files=["model_index.json"])
            family = model_family(folder)
            pipeline_class = {"sd": GuidedStableDiffusionImg2ImgPipeline,
                              "sdxl": GuidedStableDiffusionXLImg2ImgPipeline}[family]
            pipe = pipeline_class.from_pretrained(str(folder))
            clip_spec = tuple(clip.split(":", 1)) if clip and ":" in clip and not Path(clip).exists() else clip
            gm = load_guidance_models(guidance, clip=clip_spec, vgg=backbone, tiny_decoder=TINY_DECODERS[family])
            info = {"stable_diffusion": source, "stable_diffusion_path": str(folder), "family": family,
                    "guidance": gm.info, "random": False}
        info["pipeline"] = type(pipe).__name__
        pipe.set_scheduler(scheduler)
        pipe.set_progress_bar_config(disable=not sys.stderr.isatty())
        pipe.to(accelerator.device)
        gm.to(accelerator.device)
        pipe.set_guidance_models(gm)
        return cls(pipe, gm, accelerator=accelerator, tiny=tiny, model_info=info, scheduler=scheduler,
                   load_options={"model": model, "clip": clip, "backbone": backbone})

    def _check_fits_the_model(self, photo: PIL.Image.Image, size: int) -> None:
        """The short side must survive the VAE and every UNet downsampling with at least one latent pixel."""
        unet_downs = 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        need = self.pipe.vae_scale_factor * unet_downs
        w, h = photo.size
        if min(w, h) // 8 * 8 < need:
            raise GuidedError(f"`size` {size} makes the content image {w}x{h} px, and the model needs at least "
                              f"{need} px a side: raise `size` to at least {math.ceil(need * size / min(w, h))}, "
                              "or crop the photo")
    @property
    def native_size(self) -> int:
        """The model's native resolution, long side in pixels (the default `size`)."""
        return self.pipe.native_size

    def run(self, content, *, prompt: str | None = None, negative_prompt: str | None = None,
            style=(), style_weights: list[float] | None = None, strength: float | None = None,
            steps: int | None = None, guidance_scale: float | None = None,
            guidance: GuidanceConfig | dict | None = None, seed: int = DEFAULTS.seed, size: int | None = None,
            preserve_color: bool = False, preset: str | None = None, scheduler: str | None = None,
            callback_on_step_end=None) -> StylizeResult:
        """Stylize `content` (PIL or path). None means: from `preset` when given, else `DEFAULTS`.

        `scheduler`: switch the loaded pipeline to this scheduler (None: keep the current one).
        `callback_on_step_end(pipe, step, timestep, callback_kwargs)`: diffusers' per-step hook, passed
        to the pipeline (`callback_kwargs` holds `latents`; `pipe.step_losses` the step's losses); an exception it
        raises ends the run (the web service cancels jobs that way)."""
        import torch

        from guided.io.images import load_image
        from guided.io.manifest import build_manifest

        p = None
        if preset is not None:
            from guided.guidance.presets import load_preset

            p = load_preset(preset)
            prompt = prompt if prompt is not None else p.prompt
            negative_prompt = negative_prompt if negative_prompt is not None else p.negative_prompt
            if not isinstance(guidance, GuidanceConfig):
                guidance = {**p.weights, **(guidance or {})}
        config = guidance_from(guidance)
        strength, steps, guidance_scale = resolved_numbers(p, strength=strength, steps=steps,
                                                           guidance_scale=guidance_scale)
        size = size or DEFAULTS.size or self.native_size
        validate.diffusion_options(strength=strength, steps=steps, guidance_scale=guidance_scale, size=size)
        if scheduler is not None and scheduler != self.scheduler:
            validate.choice(scheduler, "scheduler", SCHEDULER_NAMES)
            self.pipe.set_scheduler(scheduler)
            self.scheduler = scheduler
        style_list = [style] if isinstance(style, (str, Path, PIL.Image.Image)) else style
        styles = [load_image(s, what="style image") for s in style_list]
        self.pipe.check_guided_inputs(prompt, strength, steps, styles, config)
        photo = resize_long_side(load_image(content, what="content image"), size)
        self._check_fits_the_model(photo, size)
        generator = torch.Generator("cpu").manual_seed(seed)
        start = time.perf_counter()
        with self.accelerator.autocast():
            out = self.pipe(prompt=prompt, image=photo, strength=strength, num_inference_steps=steps,
                            guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=generator,
                            style_image=styles or None, style_image_weights=style_weights, guidance=config,
                            preserve_color=preserve_color, callback_on_step_end=callback_on_step_end)
        seconds = time.perf_counter() - start
        parameters = {"content": str(content) if not isinstance(content, PIL.Image.Image) else "<PIL image>",
                      "prompt": prompt, "negative_prompt": negative_prompt,
                      "style": [str(s) for s in ([style] if isinstance(style, (str, Path)) else style)
                                if not isinstance(s, PIL.Image.Image)],
                      "style_weights": style_weights, "strength": strength, "steps": steps,
                      "guidance_scale": guidance_scale, "scheduler": self.scheduler,
                      "size": size, "preserve_color": preserve_color, "preset": p.name if p else None,
                      "tiny": self.tiny, **{k: self.load_options.get(k) for k in ("model", "clip", "backbone")},
                      "mixed_precision": self.accelerator.mixed_precision, "guidance": asdict(config)}
        metadata = build_manifest(kind="stylize", parameters=parameters, seed=seed, models=self.model_info,
                                  device=str(self.accelerator.device), precision=self.accelerator.mixed_precision,
                                  losses={"final": out.final_losses, "history": out.loss_history},
                                  seconds=seconds, extra={"notes": out.notes})
        return StylizeResult(image=out.images[0], metadata=metadata, final_losses=out.final_losses,
                             loss_history=out.loss_history, seconds=seconds, notes=out.notes)
