"""What every guided img2img pipeline does the same way, in one place.

The objective (CLIP similarity to a prompt and to a reference painting, VGG Gram loss to the
painting, VGG content loss to the photo, total variation) is evaluated on the decoded prediction
of the clean image, x0. Its gradient moves x0; the move is written back in the form the
scheduler consumes:

* schedulers on the variance-preserving grid (DDIM, PNDM, DDPM, DPM-Solver++, UniPC): the model
  output is rewritten so that it implies the moved x0 (classifier guidance on the noise
  prediction, Dhariwal & Nichol 2021, generalised to every `prediction_type`);
* sigma-based schedulers (Euler, Euler ancestral, LMS, Heun, KDPM2): the latents are moved
  (x = x0 + sigma * eps, so moving x by -d moves the implied x0 by -d).

`mode="fast"` estimates x0 from a UNet pass without gradients and backpropagates only through a
cheap decoder; `mode="full"` backpropagates through the UNet as well.

`GuidedSamplingMixin` holds these steps for a diffusers img2img pipeline (Stable Diffusion 1.x/2.x,
SDXL): it reads only what both have (`unet`, `vae`, `scheduler`, `vae_scale_factor`,
`do_classifier_free_guidance`, `guidance_scale`, `cross_attention_kwargs`). Each pipeline's own file
keeps its `__call__`, numbered as diffusers numbers it, and calls these pieces.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils import BaseOutput

from guided.accel import autocast_for, resolve_mixed_precision
from guided.config import GuidanceConfig
from guided.errors import NonFiniteError

logger = logging.getLogger(__name__)

#: Scheduler names accepted by `set_scheduler` and the CLI's `--scheduler`.
SCHEDULERS: dict[str, type] = {
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
    "ddpm": DDPMScheduler,
    "lms": LMSDiscreteScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}

# Schedulers whose latents live on the sigma grid, x = x0 + sigma * eps (k-diffusion's form).
SIGMA_SCHEDULERS = (
    EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler,
    LMSDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
)

# How far one guided step may move x0, in units of the latents' spread, per unit of combined
# guidance magnitude, before the noise-level factor. Chosen so that the default weights visibly
# steer a 20-50 step run without tearing the image (see tests/test_pipeline.py and bench/).
GUIDANCE_STEP = 0.3


@dataclass
class GuidedImg2ImgPipelineOutput(BaseOutput):
    """Images plus what the guidance did.

    images: PIL images or an array / tensor, as `output_type` asks.
    nsfw_content_detected: the safety checker's verdicts (None without a checker, and for SDXL,
        which has none).
    loss_history: one dict per denoising step: the unweighted value of each evaluated term,
        and `step`, `timestep`, `guided` (whether guidance was applied).
    final_losses: the unweighted value of every term that has a target, measured on the final
        image whatever the weights.
    notes: what was skipped, retried or truncated, in words.
    """

    images: Any
    nsfw_content_detected: list[bool] | None
    loss_history: list[dict[str, float]] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def noise_fraction(scheduler, timestep: torch.Tensor) -> tuple[str, float, float]:
    """('sigma', sigma, c) or ('vp', alpha_bar, c) at this step, c = share of noise in x_t."""
    if isinstance(scheduler, SIGMA_SCHEDULERS):
        if scheduler.step_index is None:  # full mode gets here before `scale_model_input` has set it
            scheduler._init_step_index(timestep)
        sigma = float(scheduler.sigmas[scheduler.step_index])
        return "sigma", sigma, sigma / math.sqrt(sigma**2 + 1)
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    return "vp", alpha_bar, math.sqrt(1 - alpha_bar)


def predict_x0(output: torch.Tensor, sample: torch.Tensor, grid: str, level: float,
               prediction_type: str) -> torch.Tensor:
    """The clean latents implied by a model output, for every `prediction_type`."""
    if prediction_type == "sample":
        return output
    if grid == "sigma":
        if prediction_type == "epsilon":
            return sample - level * output
        if prediction_type == "v_prediction":
            return sample / (level**2 + 1) - output * level / math.sqrt(level**2 + 1)
    else:
        a, s = math.sqrt(level), math.sqrt(1 - level)
        if prediction_type == "epsilon":
            return (sample - s * output) / a
        if prediction_type == "v_prediction":
            return a * sample - s * output
    raise ValueError(f"`prediction_type` {prediction_type!r} is not supported (epsilon, v_prediction, sample)")


def output_for_x0(x0: torch.Tensor, sample: torch.Tensor, level: float, prediction_type: str) -> torch.Tensor:
    """The model output that implies clean latents `x0` on the variance-preserving grid."""
    if prediction_type == "sample":
        return x0
    a, s = math.sqrt(level), math.sqrt(1 - level)
    eps = (sample - a * x0) / s
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return a * eps - s * x0
    raise ValueError(f"`prediction_type` {prediction_type!r} is not supported (epsilon, v_prediction, sample)")


def as_list(value) -> list:
    """None -> [], a list or tuple -> a list, anything else -> [it]."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def guidance_config(guidance: GuidanceConfig | dict | None) -> GuidanceConfig:
    """The call's `guidance` argument as a GuidanceConfig (None: the defaults)."""
    if isinstance(guidance, dict):
        return GuidanceConfig(**guidance)
    return guidance if guidance is not None else GuidanceConfig()


@contextlib.contextmanager
def frozen(*modules):
    """Parameters of `modules` (None skipped) without `requires_grad` inside the block, as they were after.

    Guidance needs gradients with respect to the latents only; a diffusers model's parameters keep
    `requires_grad=True`, and then autograd keeps the weight-gradient work on the graph. Measured on
    the bench CPU: a UNet forward and input-gradient alone 4.5 s with them, 2.8 s without; a whole
    full-mode call only ~1.5 % faster (bench/README.md, "Guidance cost")."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class GuidedSamplingMixin:
    """The guided steps of an img2img pipeline; see the module docstring. Mixed into a diffusers
    img2img pipeline class (first in the bases), whose `__init__` must set `_guidance_models = None`."""

    _guidance_models = None

    # ----------------------------------------------------------------- configuration helpers
    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler by name (`SCHEDULERS`), keeping the checkpoint's noise schedule."""
        if name not in SCHEDULERS:
            raise ValueError(f"`scheduler` must be one of {', '.join(SCHEDULERS)}, got {name!r}")
        self.scheduler = SCHEDULERS[name].from_config(self.scheduler.config)

    def set_guidance_models(self, models) -> None:
        """Use these `GuidanceModels` for every later call that passes none."""
        self._guidance_models = models

    @property
    def step_losses(self) -> dict[str, float]:
        """The unweighted guidance terms of the step being run (readable from `callback_on_step_end`,
        whose `callback_kwargs` hold only the tensors it asked for, as diffusers' contract says)."""
        return dict(getattr(self, "_step_losses", {}))

    @property
    def native_size(self) -> int:
        """The long side, in pixels, the UNet was built for (its `sample_size` in latents)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    # ---------------------------------------------------------------------- input handling
    def check_guided_inputs(self, prompt, strength, num_inference_steps, style_images, guidance) -> None:
        """Errors that need no model: empty objective, strength, steps, guidance config."""
        prompts = as_list(prompt)
        if not any(isinstance(p, str) and p.strip() for p in prompts) and not style_images:
            raise ValueError("`prompt` is empty and no `style_image` was given: there is nothing to stylize toward")
        if not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1], got {strength!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}")
        if not isinstance(guidance, GuidanceConfig):  # ValueError for a wrong type too, as diffusers raises
            raise ValueError(  # noqa: TRY004
                f"`guidance` must be a GuidanceConfig or a dict of its fields, got {type(guidance).__name__}")

    def _prompt_notes(self, prompt) -> list[str]:
        """Warn about (and record) prompts longer than the text encoder reads."""
        tokenizer = getattr(self, "tokenizer", None) or getattr(self, "tokenizer_2", None)
        if tokenizer is None:
            return []
        notes = []
        limit = tokenizer.model_max_length
        for p in as_list(prompt):
            if not isinstance(p, str):
                continue
            n = len(tokenizer(p, truncation=False).input_ids)
            if n > limit:
                msg = f"`prompt` has {n} tokens; the text encoder reads {limit}, the rest is truncated: {p[:60]!r}..."
                warnings.warn(msg, stacklevel=3)
                notes.append(msg)
        return notes

    @staticmethod
    def _style_tensors(style_image) -> list[torch.Tensor]:
        from guided.io.images import load_image, pil_to_tensor

        tensors = []
        for item in as_list(style_image):
            if isinstance(item, torch.Tensor):
                t = item if item.ndim == 4 else item.unsqueeze(0)
                tensors.append(t.float())
            else:
                tensors.append(pil_to_tensor(load_image(item, what="style image")))
        return tensors

    def _objective(self, prompt, image: torch.Tensor, style_images, style_image_weights, guidance: GuidanceConfig,
                   guidance_models, device, generator=None):
        """(objective, content image in [0, 1], guidance models) for a preprocessed `image` in [-1, 1].

        With `guidance.seed` None the CLIP cutouts are seeded from `generator`: one seed governs the run."""
        from guided.guidance.objective import GuidedObjective

        content01 = (image.float() / 2 + 0.5).clamp(0, 1)
        resolve_mixed_precision(guidance.mixed_precision, device)  # fp16 on a CPU: an error before any step
        if guidance_models is None:
            if self._guidance_models is None:
                from guided.models.loaders import load_guidance_models

                self._guidance_models = load_guidance_models(guidance)
            guidance_models = self._guidance_models
        text = " ".join(p for p in as_list(prompt) if isinstance(p, str)).strip() or None
        if guidance.seed is None and generator is not None:
            guidance = guidance.replace(seed=as_list(generator)[0].initial_seed())
        objective = GuidedObjective(guidance, guidance_models, prompt=text, style_images=style_images,
                                    style_weights=style_image_weights, content_image=content01.to(device))
        return objective, content01, guidance_models

    # --------------------------------------------------------------------- guidance pieces
    def _timestep_cond(self, batch: int, device, dtype) -> torch.Tensor | None:
        """The guidance-scale embedding a UNet with `time_cond_proj_dim` takes (LCM), else None, as diffusers
        computes it."""
        if self.unet.config.time_cond_proj_dim is None:
            return None
        scale = torch.tensor(self.guidance_scale - 1).repeat(batch)
        return self.get_guidance_scale_embedding(scale, embedding_dim=self.unet.config.time_cond_proj_dim).to(
            device=device, dtype=dtype)

    def _step_callback(self, callback, tensor_inputs, step: int, t, local: dict, record: dict, objective) -> dict:
        """`callback_on_step_end(pipe, step, t, kwargs)` as diffusers calls it (`kwargs`: the requested
        tensors only), the step's unweighted losses in `pipe.step_losses`; returns `local` with the
        tensors the callback replaced."""
        kwargs = {k: local[k] for k in tensor_inputs}
        self._step_losses = {k: v for k, v in record.items() if k in objective.available_terms}
        outputs = callback(self, step, t, kwargs) or {}
        return {k: outputs.pop(k, v) for k, v in local.items()}

    def _unet(self, latent_model_input, t, prompt_embeds, timestep_cond, added_cond_kwargs):
        return self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds,
                         timestep_cond=timestep_cond, cross_attention_kwargs=self.cross_attention_kwargs,
                         added_cond_kwargs=added_cond_kwargs, return_dict=False)[0]

    def _model_output(self, latents, t, prompt_embeds, timestep_cond, added_cond_kwargs):
        """The (classifier-free guided) UNet output at `latents`, exactly as diffusers computes it."""
        latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
        noise_pred = self._unet(latent_model_input, t, prompt_embeds, timestep_cond, added_cond_kwargs)
        if self.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        return noise_pred

    def _model_output_for_gradient(self, latents, t, prompt_embeds, timestep_cond, added_cond_kwargs):
        """The classifier-free guided UNet output at `latents` (its value as `_model_output`'s), whose
        gradient flows through the text-conditioned branch alone: `full` mode's backward pass.

        Both branches are the same UNet at the same latents, differing only in the text, so the
        conditional branch's Jacobian stands for both: d(u + s(c - u)) = dc + (s - 1)(dc - du) ~ dc.
        The unconditional half then runs without a graph, and the backward pass (about twice a
        forward) covers one image instead of the doubled batch: ~2 UNet passes per guided step
        instead of ~3. (diffusers' community CLIP-guided pipeline saves the same way, by taking the
        gradient of the conditional prediction alone.)"""
        if not self.do_classifier_free_guidance:
            return self._model_output(latents, t, prompt_embeds, timestep_cond, added_cond_kwargs)
        doubled = 2 * latents.shape[0]

        def halves(value):
            return value.chunk(2) if isinstance(value, torch.Tensor) and value.shape[0] == doubled else (value, value)

        embeds_uncond, embeds_text = halves(prompt_embeds)
        cond_uncond, cond_text = halves(timestep_cond)
        added = {k: halves(v) for k, v in (added_cond_kwargs or {}).items()}
        added_uncond = {k: v[0] for k, v in added.items()} if added_cond_kwargs is not None else None
        added_text = {k: v[1] for k, v in added.items()} if added_cond_kwargs is not None else None
        model_input = self.scheduler.scale_model_input(latents, t)
        with torch.no_grad():
            uncond = self._unet(model_input.detach(), t, embeds_uncond, cond_uncond, added_uncond)
        text = self._unet(model_input, t, embeds_text, cond_text, added_text)
        value = uncond + self.guidance_scale * (text.detach() - uncond)
        return value + (text - text.detach())

    def _unscale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pipeline latents -> what `vae.decode` takes (the VAE's `latents_mean`/`latents_std` where set)."""
        config = self.vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            return latents * std / config.scaling_factor + mean
        return latents / config.scaling_factor

    def _decode_for_loss(self, x0: torch.Tensor, guidance: GuidanceConfig, models) -> torch.Tensor:
        """Decode clean latents to an RGB image in [0, 1], differentiably, as cheaply as allowed.

        Both modes use AutoencoderTiny (TAESD, TAESDXL) where present and `fast_decoder` allows it:
        full mode's extra is the gradient through the UNet, not the decoder, and the full VAE's
        decode and input-gradient at 224 px cost 5.6 s a step on the bench CPU against the tiny
        decoder's 0.45 s (bench/README.md). Otherwise the full VAE decodes latents resized so that
        the image comes out at `loss_size`: the losses are computed at that size anyway, and the
        decoder's cost (forward and backward) grows with its pixels."""
        tiny = getattr(models, "tiny_decoder", None)
        precision = resolve_mixed_precision(guidance.mixed_precision, x0.device)
        if tiny is not None and guidance.fast_decoder in ("auto", "tiny"):
            with autocast_for(tiny, precision, x0.device):
                image = tiny.decode(x0.to(tiny.dtype)).sample
        else:
            z = x0
            factor = min(1.0, guidance.loss_size / (max(z.shape[-2:]) * self.vae_scale_factor))
            if factor < 1.0:
                z = F.interpolate(z, scale_factor=factor, mode="bilinear", align_corners=False)
            with autocast_for(self.vae, precision, x0.device):
                image = self.vae.decode(self._unscale_latents(z.to(self.vae.dtype)), return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def _guidance_direction(self, latents, t, noise_pred, grid, level, objective, guidance, models, step,
                            num_steps, model_args):
        """Gradient of the objective w.r.t. x0 (fast) or x_t (full), the term values and notes.

        In full mode `noise_pred` is None on entry and the UNet output is returned in its place."""
        prediction_type = self.scheduler.config.prediction_type
        direction = None
        with torch.enable_grad(), frozen(self.unet, self.vae, getattr(models, "tiny_decoder", None)):
            if guidance.mode == "full":
                x = latents.detach().requires_grad_(True)
                out = self._model_output_for_gradient(x, t, *model_args)
                noise_pred = out.detach()
                x0 = predict_x0(out, x, grid, level, prediction_type)
                wrt = x
            else:
                x0 = predict_x0(noise_pred, latents, grid, level, prediction_type).detach().requires_grad_(True)
                wrt = x0
            image = self._decode_for_loss(x0, guidance, models)
            grad_image, values, notes = objective.image_gradient(image, step=step, num_steps=num_steps)
            magnitude = grad_image.float().pow(2).mean().sqrt()
            if not torch.isfinite(magnitude):
                notes = notes + [f"step {step}: non-finite image gradient, guidance skipped"]
            elif magnitude > 0:
                (grad,) = torch.autograd.grad(image, wrt, grad_outputs=grad_image)
                grad = grad.float()
                rms = grad.pow(2).mean().sqrt()
                if not torch.isfinite(rms):
                    notes = notes + [f"step {step}: non-finite latent gradient, guidance skipped"]
                elif rms > 0:
                    # Unit-RMS direction scaled by the combined image-gradient magnitude (which carries
                    # the term weights): the step does not depend on the decoder's or UNet's Jacobian scale.
                    direction = grad / rms * magnitude
        return direction, values, notes, noise_pred

    def _apply_guidance(self, direction, latents, noise_pred, grid, level, fraction):
        """Move the implied x0 by -step; returns (latents, noise_pred) for the scheduler."""
        delta = GUIDANCE_STEP * fraction * direction
        if grid == "sigma":
            return (latents.float() - delta).to(latents.dtype), noise_pred
        prediction_type = self.scheduler.config.prediction_type
        x0 = predict_x0(noise_pred.float(), latents.float(), grid, level, prediction_type)
        return latents, output_for_x0(x0 - delta, latents.float(), level, prediction_type).to(noise_pred.dtype)

    def _guided_model_output(self, latents, t, step: int, num_steps: int, model_args: tuple, objective,
                             guidance: GuidanceConfig, models):
        """One denoising step's model output, steered where a term is active.

        Returns (latents, noise_pred, record, notes): what to hand to `scheduler.step` (sigma
        schedulers get moved latents, the others a rewritten model output), the step's
        `loss_history` entry and what was skipped. With no active term this is the UNet output."""
        active = [n for n in guidance.active_terms(step, num_steps) if n in objective.available_terms]
        noise_pred = None if active and guidance.mode == "full" else self._model_output(latents, t, *model_args)
        record = {"step": step, "timestep": float(t), "guided": False}
        if not active:
            return latents, noise_pred, record, []
        grid, level, fraction = noise_fraction(self.scheduler, t)
        direction, values, notes, noise_pred = self._guidance_direction(
            latents, t, noise_pred, grid, level, objective, guidance, models, step, num_steps, model_args)
        record.update(values)
        if direction is not None:
            latents, noise_pred = self._apply_guidance(direction, latents, noise_pred, grid, level, fraction)
            record["guided"] = True
        for note in notes:
            logger.info(note)
        return latents, noise_pred, record, notes

    # ------------------------------------------------------------------------- final image
    def _vae_decode(self, latents, generator, *, float32: bool) -> torch.Tensor:
        """`vae.decode` of pipeline latents; `float32`: the VAE in float32 for this call, autocast off."""
        if not float32:
            return self.vae.decode(self._unscale_latents(latents.to(self.vae.dtype)), return_dict=False,
                                   generator=generator)[0]
        dtype = self.vae.dtype
        self.vae.to(torch.float32)
        try:
            with torch.autocast(latents.device.type, enabled=False):
                return self.vae.decode(self._unscale_latents(latents.float()), return_dict=False,
                                       generator=generator)[0]
        finally:
            self.vae.to(dtype)

    def _decode_checked(self, latents, notes: list[str], *, generator=None, upcast: bool = False) -> torch.Tensor:
        """Final VAE decode; a non-finite result is retried once in float32, then an error.

        `upcast`: decode in float32 from the start (what diffusers' SDXL pipelines do for a
        half-precision VAE whose config sets `force_upcast`). The retry also covers a float32 VAE
        run under fp16 autocast, which overflows as a half-precision one does."""
        image = self._vae_decode(latents, generator, float32=upcast)
        if torch.isfinite(image).all():
            return image
        notes.append("VAE decode was not finite; retried in float32")
        warnings.warn(notes[-1], stacklevel=4)
        image = self._vae_decode(latents, generator, float32=True)
        if not torch.isfinite(image).all():
            bad = "latents" if not torch.isfinite(latents).all() else "VAE output"
            raise NonFiniteError(f"the final image is not finite even in float32 (non-finite {bad}); "
                                 "no image was produced")
        return image

    def _decode_and_measure(self, latents, objective, content01, preserve_color: bool, notes: list[str], *,
                            generator=None, upcast: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """The final image in [-1, 1] (colours of the photo kept when asked) and its unweighted losses."""
        from guided.color import transfer_luminance

        image = self._decode_checked(latents, notes, generator=generator, upcast=upcast)
        image01 = (image.float() / 2 + 0.5).clamp(0, 1)
        if preserve_color:
            image01 = transfer_luminance(image01, content01.to(image01.device))
            image = (image01 * 2 - 1).to(image.dtype)
        return image, objective.final_losses(image01)
