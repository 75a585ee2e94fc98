"""Guided Stable Diffusion img2img: every denoising step is steered by a combined objective.

The objective (CLIP similarity to a prompt and to a reference painting, VGG Gram loss to the
painting, VGG content loss to the photo, total variation) is evaluated on the decoded prediction
of the clean image, x0, and its gradient moves x0 in the form the scheduler consumes; how, and the
`fast`/`full` modes, are described in `pipelines.guided_sampling`, shared with the SDXL pipeline.

With every guidance weight at 0 the call is step for step diffusers'
`StableDiffusionImg2ImgPipeline`, which this class extends: the stage methods (`check_inputs`,
`encode_prompt`, `prepare_latents`, `get_timesteps`) are the library's own.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import PIL.Image
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_timesteps

from guided.config import GuidanceConfig
from pipelines.guided_sampling import (
    SCHEDULERS,
    GuidedImg2ImgPipelineOutput,
    GuidedSamplingMixin,
    guidance_config,
)

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULERS", "GuidedImg2ImgPipelineOutput", "GuidedStableDiffusionImg2ImgPipeline"]


class GuidedStableDiffusionImg2ImgPipeline(GuidedSamplingMixin, StableDiffusionImg2ImgPipeline):
    r"""Stable Diffusion img2img steered at every step by CLIP and VGG losses.

    Components are those of `StableDiffusionImg2ImgPipeline`; the safety checker and feature
    extractor are optional (pass them to keep the checker). Any Stable Diffusion 1.x/2.x
    checkpoint loads with `from_pretrained`.

    The guidance models (CLIP, VGG, optional tiny decoder) are not pipeline components: pass
    them per call as `guidance_models` (a `guided.guidance.objective.GuidanceModels`), set them once with
    `set_guidance_models`, or let the first call load the defaults (real weights, or a clear
    error that says which are missing).
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, safety_checker=None,
                 feature_extractor=None, image_encoder=None, requires_safety_checker: bool = False):
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        self._guidance_models = None

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

        `callback_on_step_end(pipe, step, timestep, callback_kwargs)` can read `pipe.step_losses`, the
        step's unweighted term values.
        """
        guidance = guidance_config(guidance)
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
        objective, content01, models = self._objective(prompt, image, style_images, style_image_weights, guidance,
                                                       guidance_models, device, generator)
        notes += list(objective.notes)

        # 5. Set timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength, device)
        latent_timestep = timesteps[:1].repeat(batch_size * num_images_per_prompt)

        # 6. Prepare latent variables
        latents = self.prepare_latents(image, latent_timestep, batch_size, num_images_per_prompt,
                                       prompt_embeds.dtype, device, generator)

        # 7. Prepare extra step kwargs and the optional guidance-scale embedding
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        timestep_cond = self._timestep_cond(batch_size * num_images_per_prompt, device, latents.dtype)

        # 8. Denoising loop, guided
        history: list[dict[str, float]] = []
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                model_args = (prompt_embeds, timestep_cond, None)
                latents, noise_pred, record, step_notes = self._guided_model_output(
                    latents, t, i, len(timesteps), model_args, objective, guidance, models)
                history.append(record)
                notes += step_notes

                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, i, t, {
                        "latents": latents, "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds, "noise_pred": noise_pred}, record, objective)
                    latents, prompt_embeds = local["latents"], local["prompt_embeds"]
                    negative_prompt_embeds = local["negative_prompt_embeds"]

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 9. Decode (float32 retry on a non-finite result), measure, post-process
        final_losses: dict[str, float] = {}
        if output_type == "latent":
            image, has_nsfw_concept = latents, None
        else:
            image, final_losses = self._decode_and_measure(latents, objective, content01, preserve_color, notes,
                                                           generator=generator)
            image, has_nsfw_concept = self.run_safety_checker(image, device, prompt_embeds.dtype)
        do_denormalize = [True] * image.shape[0] if has_nsfw_concept is None else [not n for n in has_nsfw_concept]
        if output_type != "latent":
            image = self.image_processor.postprocess(image, output_type=output_type, do_denormalize=do_denormalize)
        self.maybe_free_model_hooks()

        if not return_dict:
            return image, has_nsfw_concept
        return GuidedImg2ImgPipelineOutput(images=image, nsfw_content_detected=has_nsfw_concept,
                                           loss_history=history, final_losses=final_losses, notes=notes)
