"""Diffusers pipelines of guided, one self-contained file each."""
from pipelines.pipeline_guided_img2img import (
    SCHEDULERS,
    GuidedImg2ImgPipelineOutput,
    GuidedStableDiffusionImg2ImgPipeline,
)

__all__ = ["SCHEDULERS", "GuidedImg2ImgPipelineOutput", "GuidedStableDiffusionImg2ImgPipeline"]
