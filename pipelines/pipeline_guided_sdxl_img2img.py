"""Guided SDXL img2img: every denoising step is steered by the combined objective.

The same objective and the same guided step as the Stable Diffusion pipeline
(`pipelines.guided_sampling`: x0 from the model output for every prediction type, written back on
the variance-preserving or the sigma grid, `fast`/`full` modes, the float32 retry of a non-finite
decode), on SDXL's two text encoders and size/crop (`text_time`) conditioning.

SDXL specifics:
* `fast` mode decodes the x0 estimate with the SDXL tiny autoencoder (`madebyollin/taesdxl`,
  passed as `guidance_models.tiny_decoder`) where present, else with the VAE at `loss_size`;
* SDXL's VAE overflows in float16: as diffusers does, a half-precision VAE whose config sets
  `force_upcast` decodes the final image in float32; any other non-finite decode (an fp16-fixed
  VAE, or fp16 autocast over a float32 VAE) is retried once in float32 and noted;
* the CLIP text term steers toward `prompt`; `prompt_2` conditions `text_encoder_2` only.

With every guidance weight at 0 the call is step for step diffusers'
`StableDiffusionXLImg2ImgPipeline`, which this class extends: the stage methods (`check_inputs`,
`encode_prompt`, `prepare_latents`, `get_timesteps`, `_get_add_time_ids`) are the library's own.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import PIL.Image
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import retrieve_timesteps

from guided.config import GuidanceConfig
from pipelines.guided_sampling import GuidedImg2ImgPipelineOutput, GuidedSamplingMixin, guidance_config

logger = logging.getLogger(__name__)


def _fraction(value) -> bool:
    """Whether `denoising_start`/`denoising_end` is in use: a float strictly between 0 and 1 (diffusers' rule)."""
    return isinstance(value, float) and 0 < value < 1


class GuidedStableDiffusionXLImg2ImgPipeline(GuidedSamplingMixin, StableDiffusionXLImg2ImgPipeline):
    r"""SDXL img2img steered at every step by CLIP and VGG losses.

    Components are those of `StableDiffusionXLImg2ImgPipeline` (`vae`, `text_encoder`,
    `text_encoder_2`, `tokenizer`, `tokenizer_2`, `unet`, `scheduler`; `image_encoder` and
    `feature_extractor` optional). Any SDXL checkpoint (base, refiner, fine-tunes) loads with
    `from_pretrained`.

    The guidance models (CLIP, VGG, optional TAESDXL decoder) are not pipeline components: pass
    them per call as `guidance_models` (a `guided.guidance.objective.GuidanceModels`), set them
    once with `set_guidance_models`, or let the first call load the defaults.
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids",
                                                    "noise_pred"]

    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler,
                 image_encoder=None, feature_extractor=None, requires_aesthetics_score: bool = False,
                 force_zeros_for_empty_prompt: bool = True, add_watermarker: bool | None = None):
        super().__init__(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                         tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, image_encoder=image_encoder,
                         feature_extractor=feature_extractor, requires_aesthetics_score=requires_aesthetics_score,
                         force_zeros_for_empty_prompt=force_zeros_for_empty_prompt, add_watermarker=add_watermarker)
        self._guidance_models = None

    # -------------------------------------------------------------------------- the call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        prompt_2: str | list[str] | None = None,
        image: PIL.Image.Image | torch.Tensor | list | None = None,
        strength: float = 0.3,
        num_inference_steps: int = 50,
        denoising_start: float | None = None,
        denoising_end: float | None = None,
        guidance_scale: float = 5.0,
        negative_prompt: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        original_size: tuple[int, int] | None = None,
        crops_coords_top_left: tuple[int, int] = (0, 0),
        target_size: tuple[int, int] | None = None,
        negative_original_size: tuple[int, int] | None = None,
        negative_crops_coords_top_left: tuple[int, int] = (0, 0),
        negative_target_size: tuple[int, int] | None = None,
        aesthetic_score: float = 6.0,
        negative_aesthetic_score: float = 2.5,
        clip_skip: int | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        style_image=None,
        style_image_weights: list[float] | None = None,
        guidance: GuidanceConfig | dict | None = None,
        guidance_models=None,
        preserve_color: bool = False,
    ):
        r"""Stylize `image` toward `prompt` and/or `style_image`.

        Diffusers' SDXL img2img arguments keep their meaning and defaults. Ours:
            style_image: one reference painting or several (PIL, path or (1, 3, H, W) tensor in [0, 1]).
            style_image_weights: blend weights of several style images (default: equal).
            guidance: `guided.GuidanceConfig` or a dict of its fields (weights per term, step windows,
                mode "fast"/"full", loss resolution, cutouts ...). All weights 0: plain SDXL img2img.
            guidance_models: `guided.guidance.objective.GuidanceModels` (CLIP, VGG, TAESDXL decoder).
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
        self.check_inputs(prompt, prompt_2, strength, num_inference_steps, None, negative_prompt, negative_prompt_2,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        notes = self._prompt_notes(prompt) + self._prompt_notes(prompt_2)
        self._guidance_scale = guidance_scale
        self._guidance_rescale = 0.0
        self._clip_skip = clip_skip
        self._cross_attention_kwargs = None
        self._denoising_end = denoising_end
        self._denoising_start = denoising_start
        self._interrupt = False

        # 2. Define call parameters
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device

        # 3. Encode input prompt (both text encoders; pooled embeddings from the second)
        prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds = self.encode_prompt(
            prompt=prompt, prompt_2=prompt_2, device=device, num_images_per_prompt=num_images_per_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance, negative_prompt=negative_prompt,
            negative_prompt_2=negative_prompt_2, clip_skip=self.clip_skip)

        # 4. Preprocess image; build the objective on the photo, the prompt and the paintings.
        image = self.image_processor.preprocess(image)
        objective, content01, models = self._objective(prompt, image, style_images, style_image_weights, guidance,
                                                       guidance_models, device, generator)
        notes += list(objective.notes)

        # 5. Prepare timesteps (`denoising_start` replaces strength, as in diffusers)
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        timesteps, num_inference_steps = self.get_timesteps(
            num_inference_steps, strength, device,
            denoising_start=self.denoising_start if _fraction(self.denoising_start) else None)
        latent_timestep = timesteps[:1].repeat(batch_size * num_images_per_prompt)

        # 6. Prepare latent variables (no noise added when continuing from `denoising_start`)
        latents = self.prepare_latents(image, latent_timestep, batch_size, num_images_per_prompt, prompt_embeds.dtype,
                                       device, generator, add_noise=self.denoising_start is None)

        # 7. Prepare extra step kwargs
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        height, width = (side * self.vae_scale_factor for side in latents.shape[-2:])
        original_size = original_size or (height, width)
        target_size = target_size or (height, width)

        # 8. Prepare added time ids & embeddings (SDXL's size and crop conditioning)
        text_encoder_projection_dim = (int(pooled_prompt_embeds.shape[-1]) if self.text_encoder_2 is None
                                       else self.text_encoder_2.config.projection_dim)
        add_time_ids, add_neg_time_ids = self._get_add_time_ids(
            original_size, crops_coords_top_left, target_size, aesthetic_score, negative_aesthetic_score,
            negative_original_size or original_size, negative_crops_coords_top_left,
            negative_target_size or target_size, dtype=prompt_embeds.dtype,
            text_encoder_projection_dim=text_encoder_projection_dim)
        add_text_embeds = pooled_prompt_embeds
        add_time_ids = add_time_ids.repeat(batch_size * num_images_per_prompt, 1)
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
            add_text_embeds = torch.cat([negative_pooled_prompt_embeds, add_text_embeds], dim=0)
            add_neg_time_ids = add_neg_time_ids.repeat(batch_size * num_images_per_prompt, 1)
            add_time_ids = torch.cat([add_neg_time_ids, add_time_ids], dim=0)
        prompt_embeds, add_text_embeds, add_time_ids = (x.to(device) for x in (prompt_embeds, add_text_embeds,
                                                                               add_time_ids))

        # 9. Denoising loop, guided
        num_warmup_steps = max(len(timesteps) - num_inference_steps * self.scheduler.order, 0)

        # 9.1 Apply denoising_end
        if _fraction(self.denoising_end) and _fraction(self.denoising_start) and \
                self.denoising_start >= self.denoising_end:
            raise ValueError(f"`denoising_start` ({self.denoising_start}) must be below `denoising_end` "
                             f"({self.denoising_end})")
        if _fraction(self.denoising_end):
            cutoff = round(self.scheduler.config.num_train_timesteps * (1 - self.denoising_end))
            num_inference_steps = len([ts for ts in timesteps if ts >= cutoff])
            timesteps = timesteps[:num_inference_steps]

        # 9.2 Optionally get Guidance Scale Embedding
        timestep_cond = self._timestep_cond(batch_size * num_images_per_prompt, device, latents.dtype)

        history: list[dict[str, float]] = []
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                model_args = (prompt_embeds, timestep_cond, {"text_embeds": add_text_embeds, "time_ids": add_time_ids})
                latents, noise_pred, record, step_notes = self._guided_model_output(
                    latents, t, i, len(timesteps), model_args, objective, guidance, models)
                history.append(record)
                notes += step_notes

                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, i, t, {
                        "latents": latents, "prompt_embeds": prompt_embeds, "add_text_embeds": add_text_embeds,
                        "add_time_ids": add_time_ids, "noise_pred": noise_pred}, record, objective)
                    latents, prompt_embeds = local["latents"], local["prompt_embeds"]
                    add_text_embeds, add_time_ids = local["add_text_embeds"], local["add_time_ids"]

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 10. Decode (float32 for a half-precision VAE that asks for it; float32 retry on a
        # non-finite result), measure, watermark as diffusers does, post-process
        final_losses: dict[str, float] = {}
        if output_type == "latent":
            image = latents
        else:
            upcast = self.vae.dtype == torch.float16 and bool(self.vae.config.force_upcast)
            image, final_losses = self._decode_and_measure(latents, objective, content01, preserve_color, notes,
                                                           upcast=upcast)
            if self.watermark is not None:
                image = self.watermark.apply_watermark(image)
            image = self.image_processor.postprocess(image, output_type=output_type)
        self.maybe_free_model_hooks()

        if not return_dict:
            return (image,)
        return GuidedImg2ImgPipelineOutput(images=image, nsfw_content_detected=None, loss_history=history,
                                           final_losses=final_losses, notes=notes)
