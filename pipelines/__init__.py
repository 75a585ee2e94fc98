"""Diffusers pipelines of guided, one file each; what they share lives in `guided_sampling`."""
from pipelines.guided_sampling import SCHEDULERS, GuidedImg2ImgPipelineOutput
from pipelines.pipeline_guided_img2img import GuidedStableDiffusionImg2ImgPipeline
from pipelines.pipeline_guided_sdxl_img2img import GuidedStableDiffusionXLImg2ImgPipeline

__all__ = ["SCHEDULERS", "GuidedImg2ImgPipelineOutput", "GuidedStableDiffusionImg2ImgPipeline",
           "GuidedStableDiffusionXLImg2ImgPipeline"]
