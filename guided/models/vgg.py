"""VGG-16/19 feature extractors with named layers (`relu1_1`, `conv4_2`, `pool3`, ...).

One forward pass returns every requested layer and stops at the deepest one. Input is RGB in
[0, 1]; ImageNet normalisation happens inside (or pass `normalized=True` for an input that is
already normalised, as the Dive into Deep Learning chapter optimises).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from guided.constants import ENV_VGG_WEIGHTS, IMAGENET_MEAN, IMAGENET_STD
from guided.errors import GuidedError
from guided.io.files import sha256_file
from guided.models.checkpoints import fetch_torch_hub_checkpoint, load_state_dict, mismatch

logger = logging.getLogger(__name__)


# torchvision's configurations: channel counts, "M" for max pooling.
CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# torchvision's published ImageNet checkpoints (torchvision.models.VGG*_Weights.IMAGENET1K_V1).
URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
NAMES = {"vgg16": "VGG-16", "vgg19": "VGG-19"}


def imagenet_normalize(image01: Tensor) -> Tensor:
    """ImageNet mean/std normalisation of RGB in [0, 1], the input every ImageNet VGG expects."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image01.dtype, device=image01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image01.dtype, device=image01.device).view(1, 3, 1, 1)
    return (image01 - mean) / std


def imagenet_denormalize(x: Tensor) -> Tensor:
    """The inverse of `imagenet_normalize`, clamped to [0, 1] (the chapter's postprocess)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def min_side(layers: Sequence[str | int], arch: str = "vgg19") -> tuple[int, str]:
    """(pixels, layer): the smallest image side that reaches every layer of `layers` with at least
    one pixel. A layer of block N comes after N-1 poolings that halve the image, so it needs 2**(N-1)."""
    names = layer_names(arch)
    deepest, need = "", 1
    for layer in layers:
        name = names[layer] if isinstance(layer, int) and 0 <= layer < len(names) else str(layer)
        block = int(name[4:5]) if name.startswith(("relu", "conv")) and name[4:5].isdigit() else 1
        if 2 ** (block - 1) > need:
            deepest, need = name, 2 ** (block - 1)
    return need, deepest


def layer_names(arch: str) -> list[str]:
    """Names of the modules of `vgg*().features` in order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names, block, conv = [], 1, 1
    for v in CFGS[arch]:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def make_vgg_features(arch: str = "vgg19", *, width: float = 1.0) -> nn.Sequential:
    """A `vgg*().features`-shaped network; `width` < 1 scales channels down (tiny test models)."""
    if arch not in CFGS:
        raise GuidedError(f"`arch` must be one of {sorted(CFGS)}, got {arch!r}")
    layers: list[nn.Module] = []
    cin = 3
    for v in CFGS[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = max(1, int(round(int(v) * width)))
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


def infer_arch(module: nn.Module, what: str = "backbone") -> str:
    """'vgg16' or 'vgg19' from the number of convolutions of a features-shaped module."""
    convs = sum(isinstance(m, nn.Conv2d) for m in module.modules())
    for arch, cfg in CFGS.items():
        if convs == sum(v != "M" for v in cfg) and len(list(module.children())) == len(layer_names(arch)):
            return arch
    raise GuidedError(f"{what} is not shaped like torchvision's vgg16().features or vgg19().features "
                      f"({convs} convolutions, {len(list(module.children()))} modules)")


@dataclass(frozen=True)
class BackboneInfo:
    """Where a backbone's weights came from; written into every output's metadata."""

    arch: str
    source: str
    random: bool = False
    sha256: str | None = None

    def describe(self) -> str:
        kind = "RANDOM weights" if self.random else "pretrained weights"
        return f"{NAMES[self.arch]} with {kind} ({self.source})"


def _features_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the `features` part of a full-model or features-only torchvision state dict."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def _arch_from_state(state: dict[str, Tensor], path: Path) -> str:
    convs = sum(1 for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    for arch, cfg in CFGS.items():
        if convs == sum(v != "M" for v in cfg):
            return arch
    raise GuidedError(f"weights file '{path}' holds {convs} convolutions; expected 13 (VGG-16) or 16 (VGG-19)")


def _from_file(path: Path) -> tuple[nn.Sequential, BackboneInfo]:
    state = _features_state(load_state_dict(path))
    arch = _arch_from_state(state, path)
    net = make_vgg_features(arch)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise GuidedError(f"weights file '{path}' does not fit torchvision's {arch}().features: "
                          f"{mismatch(exc)}") from None
    return net, BackboneInfo(arch, f"local file {path}", sha256=sha256_file(path))


def _pretrained(arch: str) -> tuple[nn.Sequential, BackboneInfo]:
    how = (f"Download it where there is internet with `python -c \"import torchvision; torchvision.models."
           f"{arch}(weights='IMAGENET1K_V1')\"` (then copy the file to that path), or pass a local "
           f"torchvision-format file with --backbone PATH or {ENV_VGG_WEIGHTS}=PATH, or choose "
           f"--backbone {arch}-random for an explicitly random network.")
    path = fetch_torch_hub_checkpoint(URLS[arch], f"{NAMES[arch]} ImageNet weights", how)
    net, info = _from_file(path)
    return net, BackboneInfo(arch, f"torchvision {path.name}", sha256=info.sha256)


def _random(arch: str, seed: int) -> tuple[nn.Sequential, BackboneInfo]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_vgg_features(arch)
    logger.warning("NOTICE: %s with RANDOM weights (seed %s), chosen explicitly: outputs are not real "
                   "stylizations.", NAMES[arch], seed)
    return net, BackboneInfo(arch, f"random init, seed {seed}", random=True)


def resolve_backbone(backbone: str | Path | nn.Module | None = None, *,
                     seed: int = 0) -> tuple[nn.Sequential, BackboneInfo]:
    """A VGG `features` network and where it came from.

    `backbone`: "vgg19" / "vgg16" (torchvision's ImageNet weights from the torch hub cache, or a
    download where the network allows), "vgg19-random" / "vgg16-random" (explicit, seeded), a path
    to a local torchvision-format state dict (.safetensors or .pth), or an `nn.Module` shaped like
    `vgg19().features`. None means the file in $GUIDED_VGG_WEIGHTS if set, else "vgg19".
    """
    import os

    if backbone is None:
        backbone = os.environ.get(ENV_VGG_WEIGHTS) or "vgg19"
    if isinstance(backbone, nn.Module):
        return backbone, BackboneInfo(infer_arch(backbone), f"user module {type(backbone).__name__}")
    name = str(backbone)
    if name in URLS:
        return _pretrained(name)
    if name.endswith("-random") and name[: -len("-random")] in CFGS:
        return _random(name[: -len("-random")], seed)
    path = Path(name).expanduser()
    if path.suffix or path.exists() or "/" in name:
        if not path.is_file():
            raise GuidedError(f"`backbone` file '{path}' does not exist")
        return _from_file(path)
    raise GuidedError(f"`backbone` must be vgg19, vgg16, vgg19-random, vgg16-random, a weights file "
                      f"or an nn.Module, got {name!r}")


class VGGFeatures(nn.Module):
    """Named-layer VGG features from one forward pass, stopping at the deepest requested layer.

    ReLUs are applied out of place, so a `conv*` layer really is the pre-activation (torchvision's
    in-place ReLUs overwrite it). `pool="avg"` swaps max for average pooling, as Gatys et al. did.
    """

    def __init__(self, backbone: nn.Module, arch: str | None = None, *, pool: str = "max"):
        super().__init__()
        if pool not in {"max", "avg"}:
            raise GuidedError(f"`pool` must be 'max' or 'avg', got {pool!r}")
        self.arch = arch or infer_arch(backbone)
        self.names = layer_names(self.arch)
        self.body = nn.ModuleList(backbone.children())
        self.pool = pool
        self.requires_grad_(False).eval()

    def extra_repr(self) -> str:
        return f"arch={self.arch}, pool={self.pool}"

    def index(self, layer: str | int) -> int:
        """Position of a named layer (or a torchvision index) in `features`."""
        if isinstance(layer, int):
            if not 0 <= layer < len(self.names):
                raise GuidedError(f"layer index {layer} is outside 0..{len(self.names) - 1} of {self.arch}")
            return layer
        try:
            return self.names.index(layer)
        except ValueError:
            raise GuidedError(f"layer {layer!r} is not a layer of {self.arch}; "
                              f"known: {', '.join(self.names)}") from None

    def normalize(self, image: Tensor) -> Tensor:
        """ImageNet mean/std normalisation of an RGB image in [0, 1]."""
        return imagenet_normalize(image)

    def forward(self, image: Tensor, layers: Sequence[str | int], *, normalized: bool = False) -> dict:
        """{layer: activation} for every requested layer; keys are as given."""
        wanted = {self.index(layer): layer for layer in layers}
        x = image if normalized else self.normalize(image)
        out = {}
        for i, module in enumerate(self.body[: max(wanted) + 1]):
            if isinstance(module, nn.ReLU):
                x = F.relu(x)
            elif isinstance(module, nn.MaxPool2d) and self.pool == "avg":
                x = F.avg_pool2d(x, module.kernel_size, module.stride)
            else:
                x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out
