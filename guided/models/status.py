"""`model_status()`: what each feature needs and whether it is on this machine (`guided models`).
No network: every lookup is local."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guided.constants import DEFAULT_SD_MODEL, DEFAULT_SDXL_MODEL, DEFAULT_TINY_DECODER, ENV_VGG_WEIGHTS, TINY_DECODERS
from guided.models.checkpoints import torch_hub_checkpoint
from guided.models.hub import (
    SD_REQUIRED_FILES,
    SDXL_REQUIRED_FILES,
    TINY_DECODER_REQUIRED_FILES,
    _cache_root,
    cached_snapshot,
    how_to_get,
    missing_files,
)


@dataclass
class ModelStatus:
    """One (feature, component) row of `guided models`."""

    feature: str  # the command that needs it: stylize, gatys, compare
    component: str  # what it is, in words ("Stable Diffusion model", "VGG-19", ...)
    source: str  # the Hub repository, file or package it comes from
    present: bool  # whether it is on this machine now
    where: str  # where it is, or where it was looked for
    how: str  # how to get it when it is missing
    required: bool  # whether the feature fails without it (else it is optional)
    missing: list[str] = field(default_factory=list)  # the files that are missing

    def to_dict(self) -> dict:
        return asdict(self)


def _repo_row(feature: str, component: str, repo: str, required: list[str], how: str, needed: bool,
              cache_dir: str | Path | None) -> ModelStatus:
    snapshot = cached_snapshot(repo, cache_dir=cache_dir)
    missing = missing_files(snapshot, required) if snapshot else ["the whole repository"]
    return ModelStatus(feature, component, repo, not missing,
                       str(snapshot) if snapshot else f"Hugging Face cache {_cache_root(cache_dir)}",
                       how, needed, [m.replace("|", " or ") for m in missing])


def _file_row(feature: str, component: str, source: str, path: Path, how: str, needed: bool) -> ModelStatus:
    present = path.is_file()
    return ModelStatus(feature, component, source, present, str(path), how, needed, [] if present else [path.name])


def _vgg_row(feature: str, arch: str, needed: bool) -> ModelStatus:
    from guided.models.vgg import URLS

    env = os.environ.get(ENV_VGG_WEIGHTS)
    name = {"vgg19": "VGG-19", "vgg16": "VGG-16"}[arch]
    how = (f"On a machine with internet run `python -c \"import torchvision; torchvision.models.{arch}"
           f"(weights='IMAGENET1K_V1')\"` and copy the file here, or set {ENV_VGG_WEIGHTS}=FILE")
    if env and arch == "vgg19":
        return _file_row(feature, f"{name} (from ${ENV_VGG_WEIGHTS})", env, Path(env).expanduser(), how, needed)
    return _file_row(feature, name, "torchvision IMAGENET1K_V1", torch_hub_checkpoint(URLS[arch]), how, needed)


def _clip_row(feature: str) -> ModelStatus:
    from guided.models.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, cached_clip_weights, clip_how_to_get

    path, looked = cached_clip_weights(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    how = clip_how_to_get(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    return ModelStatus(feature, f"CLIP {DEFAULT_CLIP_MODEL}", DEFAULT_CLIP_PRETRAINED, path is not None,
                       str(path) if path else "; ".join(looked), how,
                       True, [] if path else [f"{DEFAULT_CLIP_MODEL}/{DEFAULT_CLIP_PRETRAINED} weights"])


def _lpips_rows() -> list[ModelStatus]:
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    how = "pip install lpips (its linear layers ship inside the package)"
    if spec is None or not spec.origin:
        return [ModelStatus("compare", "LPIPS linear layers (optional)", "lpips package", False, "not installed", how,
                            False, ["lpips"])]
    alex = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    backbone_how = ("On a machine with internet run `python -c \"import torchvision; torchvision.models.alexnet"
                    "(weights='IMAGENET1K_V1')\"` and copy the file here")
    return [_file_row("compare", "LPIPS linear layers (optional)", "lpips package", alex, how, False),
            _file_row("compare", "LPIPS AlexNet backbone (optional)", "torchvision IMAGENET1K_V1",
                      torch_hub_checkpoint("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
                      backbone_how, False)]


def model_status(*, sd_model: str = DEFAULT_SD_MODEL, tiny_decoder: str = DEFAULT_TINY_DECODER,
                 sdxl_model: str = DEFAULT_SDXL_MODEL, sdxl_tiny_decoder: str = TINY_DECODERS["sdxl"],
                 cache_dir: str | Path | None = None) -> list[ModelStatus]:
    """One row per (feature, component): `present`, `where` it is or was looked for, `missing`,
    `how` to get it, and whether the feature `required`s it. No network.

    SDXL (`guided stylize --model` an SDXL checkpoint) is optional: its rows never make the
    default feature fail; it uses the same CLIP and VGG as Stable Diffusion."""
    rows = [
        _repo_row("stylize", "Stable Diffusion model", sd_model, SD_REQUIRED_FILES, how_to_get(sd_model), True,
                  cache_dir),
        _clip_row("stylize"),
        _vgg_row("stylize", "vgg19", True),
        _repo_row("stylize", "tiny decoder (fast mode; else VAE at low res)", tiny_decoder,
                  TINY_DECODER_REQUIRED_FILES, how_to_get(tiny_decoder), False, cache_dir),
        _repo_row("stylize", "SDXL model (for --model SDXL)",
                  sdxl_model, SDXL_REQUIRED_FILES, how_to_get(sdxl_model), False, cache_dir),
        _repo_row("stylize", "TAESDXL tiny decoder (SDXL fast mode; else VAE at low res)", sdxl_tiny_decoder,
                  TINY_DECODER_REQUIRED_FILES, how_to_get(sdxl_tiny_decoder), False, cache_dir),
        _vgg_row("gatys", "vgg19", True),
        _vgg_row("gatys", "vgg16", False),
    ]
    return rows + _lpips_rows()
