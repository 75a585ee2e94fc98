"""Guided Stable Diffusion img2img: every denoising step is steered by a combined objective.

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

With every guidance weight at 0 the call is step for step diffusers'
`StableDiffusionImg2ImgPipeline`, which this class extends: the stage methods (`check_inputs`,
`encode_prompt`, `prepare_latents`, `get_timesteps`) are the library's own.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_timesteps
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

from guided.config import GuidanceConfig
from guided.errors import NonFiniteError

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
    nsfw_content_detected: the safety checker's verdicts (None without a checker).
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


def _noise_fraction(scheduler, timestep: torch.Tensor) -> tuple[str, float, float]:
    """('sigma', sigma, c) or ('vp', alpha_bar, c) at this step, c = share of noise in x_t."""
    if isinstance(scheduler, SIGMA_SCHEDULERS):
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


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class GuidedStableDiffusionImg2ImgPipeline(StableDiffusionImg2ImgPipeline):
    r"""Stable Diffusion img2img steered at every step by CLIP and VGG losses.

    Components are those of `StableDiffusionImg2ImgPipeline`; the safety checker and feature
    extractor are optional (pass them to keep the checker). Any Stable Diffusion 1.x/2.x
    checkpoint loads with `from_pretrained`.

    The guidance models (CLIP, VGG, optional tiny decoder) are not pipeline components: pass
    them per call as `guidance_models` (a `guided.guidance.objective.GuidanceModels`), set them once with
    `set_guidance_models`, or let the first call load the defaults (real weights, or a clear
    error that says which are missing).
    """

    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, safety_checker=None,
                 feature_extractor=None, image_encoder=None, requires_safety_checker: bool = False):
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        self._guidance_models = None

    # ----------------------------------------------------------------- configuration helpers
    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler by name (`SCHEDULERS`), keeping the checkpoint's noise schedule."""
        if name not in SCHEDULERS:
            raise ValueError(f"`scheduler` must be one of {', '.join(SCHEDULERS)}, got {name!r}")
        self.scheduler = SCHEDULERS[name].from_config(self.scheduler.config)

    def set_guidance_models(self, models) -> None:
        """Use these `GuidanceModels` for every later call that passes none."""
        self._guidance_models = models

    # ---------------------------------------------------------------------- input handling
    def check_guided_inputs(self, prompt, strength, num_inference_steps, style_images, guidance) -> None:
        """Errors that need no model: empty objective, strength, steps, guidance config."""
        prompts = _as_list(prompt)
        if not any(isinstance(p, str) and p.strip() for p in prompts) and not style_images:
            raise ValueError("`prompt` is empty and no `style_image` was given: there is nothing to stylize toward")
        if not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1], got {strength!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}")
        if not isinstance(guidance, GuidanceConfig):
            raise ValueError("`guidance` must be a GuidanceConfig or a dict of its fields, "
                             f"got {type(guidance).__name__}")

    def _prompt_notes(self, prompt) -> list[str]:
        """Warn about (and record) prompts longer than the text encoder reads."""
        notes = []
        limit = self.tokenizer.model_max_length
        for p in _as_list(prompt):
            if not isinstance(p, str):
                continue
            n = len(self.tokenizer(p, truncation=False).input_ids)
            if n > limit:
                msg = f"`prompt` has {n} tokens; the text encoder reads {limit}, the rest is truncated: {p[:60]!r}..."
                warnings.warn(msg, stacklevel=3)
                notes.append(msg)
        return notes

    @staticmethod
    def _style_tensors(style_image) -> list[torch.Tensor]:
        from guided.io.images import load_image, pil_to_tensor

        tensors = []
        for item in _as_list(style_image):
            if isinstance(item, torch.Tensor):
                t = item if item.ndim == 4 else item.unsqueeze(0)
                tensors.append(t.float())
            else:
                tensors.append(pil_to_tensor(load_image(item, what="style image")))
        return tensors

    def _load_guidance_models(self, guidance: GuidanceConfig):
        if self._guidance_models is None:
            from guided.models.guidance import load_guidance_models

            self._guidance_models = load_guidance_models(guidance)
        return self._guidance_models

    # --------------------------------------------------------------------- guidance pieces
    def _model_output(self, latents, t, prompt_embeds, timestep_cond, added_cond_kwargs):
        """The (classifier-free guided) UNet output at `latents`, exactly as diffusers computes it."""
        latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
        noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds,
                               timestep_cond=timestep_cond, cross_attention_kwargs=self.cross_attention_kwargs,
                               added_cond_kwargs=added_cond_kwargs, return_dict=False)[0]
        if self.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        return noise_pred

    def _decode_for_loss(self, x0: torch.Tensor, guidance: GuidanceConfig, models) -> torch.Tensor:
        """Decode clean latents to an RGB image in [0, 1], differentiably, as cheaply as the mode allows.

        `fast` uses AutoencoderTiny where present. Otherwise (and always in `full`) the full VAE decodes
        latents resized so that the image comes out at `loss_size`: the losses are computed at that
        size anyway, and the decoder's cost (forward and backward) grows with its pixels."""
        tiny = getattr(models, "tiny_decoder", None)
        if guidance.mode == "fast" and tiny is not None and guidance.fast_decoder in ("auto", "tiny"):
            image = tiny.decode(x0.to(tiny.dtype)).sample
        else:
            z = x0
            factor = min(1.0, guidance.loss_size / (max(z.shape[-2:]) * self.vae_scale_factor))
            if factor < 1.0:
                z = F.interpolate(z, scale_factor=factor, mode="bilinear", align_corners=False)
            image = self.vae.decode(z.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def _guidance_direction(self, latents, t, noise_pred, grid, level, objective, guidance, models, step,
                            num_steps, model_args):
        """Gradient of the objective w.r.t. x0 (fast) or x_t (full), the term values and notes.

        In full mode `noise_pred` is None on entry and the UNet output is returned in its place."""
        prediction_type = self.scheduler.config.prediction_type
        direction = None
        with torch.enable_grad():
            if guidance.mode == "full":
                x = latents.detach().requires_grad_(True)
                out = self._model_output(x, t, *model_args)
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

    def _decode_checked(self, latents, generator, notes: list[str]) -> torch.Tensor:
        """Final VAE decode; a non-finite result is retried once in float32, then an error."""
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
        if torch.isfinite(image).all():
            return image
        notes.append("VAE decode was not finite; retried in float32")
        warnings.warn(notes[-1], stacklevel=3)
        dtype = self.vae.dtype
        self.vae.to(torch.float32)
        try:
            with torch.autocast(latents.device.type, enabled=False):
                image = self.vae.decode(latents.float() / self.vae.config.scaling_factor, return_dict=False,
                                        generator=generator)[0]
        finally:
            self.vae.to(dtype)
        if not torch.isfinite(image).all():
            bad = "latents" if not torch.isfinite(latents).all() else "VAE output"
            raise NonFiniteError(f"the final image is not finite even in float32 (non-finite {bad}); "
                                 "no image was produced")
        return image

    # -------------------------------------------------------------------------- the call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: PIL.Image.Image | torch.Tensor | list | None = None,
        strength: float = 0.8,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        style_image=None,
        style_image_weights: list[float] | None = None,
        guidance: GuidanceConfig | dict | None = None,
        guidance_models=None,
        preserve_color: bool = False,
    ):
        r"""Stylize `image` toward `prompt` and/or `style_image`.

        Diffusers' img2img arguments keep their meaning. Ours:
            style_image: one reference painting or several (PIL, path or (1, 3, H, W) tensor in [0, 1]).
            style_image_weights: blend weights of several style images (default: equal).
            guidance: `guided.GuidanceConfig` or a dict of its fields (weights per term, step windows,
                mode "fast"/"full", loss resolution, cutouts ...). All weights 0: plain img2img.
            guidance_models: `guided.guidance.objective.GuidanceModels` (CLIP, VGG, tiny decoder).
            preserve_color: keep the photo's colours (luminance-only result).

        `callback_on_step_end(pipe, step, timestep, callback_kwargs)` also receives
        `callback_kwargs["losses"]`, the step's unweighted term values.
        """
        from guided.color import transfer_luminance
        from guided.guidance.objective import GuidedObjective

        if isinstance(guidance, dict):
            guidance = GuidanceConfig(**guidance)
        guidance = guidance if guidance is not None else GuidanceConfig()
        callback_on_step_end_tensor_inputs = list(callback_on_step_end_tensor_inputs)

        # 1. Check inputs (ours first: they need no model), then diffusers' own.
        style_images = self._style_tensors(style_image)
        self.check_guided_inputs(prompt, strength, num_inference_steps, style_images, guidance)
        if prompt is None:
            prompt = ""
        self.check_inputs(prompt, strength, None, negative_prompt, None, None, None, None,
                          callback_on_step_end_tensor_inputs)
        notes = self._prompt_notes(prompt)
        self._guidance_scale = guidance_scale
        self._clip_skip = None
        self._cross_attention_kwargs = None
        self._interrupt = False

        # 2. Define call parameters
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device

        # 3. Encode input prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt)
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 4. Preprocess image; build the objective on the photo, the prompt and the paintings.
        image = self.image_processor.preprocess(image)
        content01 = (image.float() / 2 + 0.5).clamp(0, 1)
        models = guidance_models if guidance_models is not None else self._load_guidance_models(guidance)
        text = " ".join(p for p in _as_list(prompt) if isinstance(p, str)).strip() or None
        if guidance.seed is None and generator is not None:  # one seed for the noise and the CLIP cutouts
            guidance = guidance.replace(seed=_as_list(generator)[0].initial_seed())
        objective = GuidedObjective(guidance, models, prompt=text, style_images=style_images,
                                    style_weights=style_image_weights, content_image=content01.to(device))
        notes += list(getattr(objective, "notes", []))

        # 5. Set timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength, device)
        latent_timestep = timesteps[:1].repeat(batch_size * num_images_per_prompt)

        # 6. Prepare latent variables
        latents = self.prepare_latents(image, latent_timestep, batch_size, num_images_per_prompt,
                                       prompt_embeds.dtype, device, generator)

        # 7. Prepare extra step kwargs and the optional guidance-scale embedding
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        timestep_cond = None
        if self.unet.config.time_cond_proj_dim is not None:
            scale = torch.tensor(self.guidance_scale - 1).repeat(batch_size * num_images_per_prompt)
            timestep_cond = self.get_guidance_scale_embedding(
                scale, embedding_dim=self.unet.config.time_cond_proj_dim).to(device=device, dtype=latents.dtype)
        model_args = (prompt_embeds, timestep_cond, None)

        # 8. Denoising loop, guided
        history: list[dict[str, float]] = []
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                active = guidance.active_terms(i, len(timesteps))
                active = [n for n in active if n in objective.available_terms]
                if active and guidance.mode == "full":
                    noise_pred = None
                else:
                    noise_pred = self._model_output(latents, t, *model_args)
                record = {"step": i, "timestep": float(t), "guided": False}
                if active:
                    grid, level, fraction = _noise_fraction(self.scheduler, t)
                    direction, values, step_notes, noise_pred = self._guidance_direction(
                        latents, t, noise_pred, grid, level, objective, guidance, models, i, len(timesteps),
                        model_args)
                    record.update(values)
                    notes += step_notes
                    if direction is not None:
                        latents, noise_pred = self._apply_guidance(direction, latents, noise_pred, grid, level,
                                                                   fraction)
                        record["guided"] = True
                history.append(record)

                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": prompt_embeds,
                             "negative_prompt_embeds": negative_prompt_embeds, "noise_pred": noise_pred}
                    callback_kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    callback_kwargs["losses"] = {k: v for k, v in record.items() if k in objective.available_terms}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 9. Decode (float32 retry on a non-finite result), measure, post-process
        final_losses: dict[str, float] = {}
        if output_type == "latent":
            image, has_nsfw_concept = latents, None
        else:
            image = self._decode_checked(latents, generator, notes)
            image01 = (image.float() / 2 + 0.5).clamp(0, 1)
            if preserve_color:
                image01 = transfer_luminance(image01, content01.to(image01.device))
                image = (image01 * 2 - 1).to(image.dtype)
            final_losses = objective.final_losses(image01)
            image, has_nsfw_concept = self.run_safety_checker(image, device, prompt_embeds.dtype)
        do_denormalize = [True] * image.shape[0] if has_nsfw_concept is None else [not n for n in has_nsfw_concept]
        if output_type != "latent":
            image = self.image_processor.postprocess(image, output_type=output_type, do_denormalize=do_denormalize)
        self.maybe_free_model_hooks()

        if not return_dict:
            return image, has_nsfw_concept
        return GuidedImg2ImgPipelineOutput(images=image, nsfw_content_detected=has_nsfw_concept,
                                           loss_history=history, final_losses=final_losses, notes=notes)


