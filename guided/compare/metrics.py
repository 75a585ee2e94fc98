"""Metrics that score a stylization with the models a run already loaded (pure torch).

    clip_score                  100 * max(cos(CLIP(image), CLIP(prompt)), 0)   (CLIPScore, Hessel et al. 2021)
    clip_image_similarity       cos(CLIP(a), CLIP(b))                          (1 for identical images)
    clip_directional_similarity cos(CLIP(out) - CLIP(src), CLIP(out_text) - CLIP(src_text))
                                (the edit direction agreeing with the text change; Gal et al. 2021,
                                as diffusers' evaluation guide scores InstructPix2Pix edits)
    gram_distance               mean over layers of MSE(Gram(VGG_l(a)), Gram(VGG_l(b)))  (style)
    content_distance            mean over layers of MSE(VGG_l(a), VGG_l(b))              (layout)
    lpips_distance              LPIPS (Zhang et al. 2018), only where its ImageNet backbone is on disk
    Scorer                      all of them for many images against one photo, paintings and prompt,
                                every target computed once (compare reports, video, benches)

Images are (1, 3, H, W) float tensors in [0, 1]. CLIP embeddings are unit-norm, float32 (see
`guided.models.clip.ClipGuide`); every image is seen whole, resized to CLIP's input, no random cutouts, so
a metric is a deterministic function of its inputs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from guided.errors import GuidedError
from guided.losses import blended_gram_targets, content_loss, gram_loss

if TYPE_CHECKING:
    from guided.models.clip import ClipGuide
    from guided.models.vgg import VGGFeatures

#: Below this norm an embedding change is "no change": its direction is undefined.
DIRECTION_EPS = 1e-6


def _check_image(image: Tensor, what: str) -> Tensor:
    if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise GuidedError(f"`{what}` must be a (B, 3, H, W) tensor in [0, 1], got {shape}")
    return image.float()


@torch.no_grad()
def _image_embedding(clip: ClipGuide, image01: Tensor, what: str) -> Tensor:
    return clip.encode_image(_check_image(image01, what).to(clip.mean.device))


@torch.no_grad()
def clip_score(clip: ClipGuide, image01: Tensor, prompt: str) -> float:
    """CLIPScore: 100 * max(cos(image, prompt), 0), averaged over the batch."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise GuidedError(f"`prompt` must be a non-empty string, got {prompt!r}")
    image = _image_embedding(clip, image01, "image01")
    text = clip.encode_text([prompt])
    cos = (image * text).sum(-1)
    return float((100.0 * cos.clamp(min=0)).mean())


@torch.no_grad()
def clip_image_similarity(clip: ClipGuide, a01: Tensor, b01: Tensor) -> float:
    """Cosine similarity of the CLIP image embeddings of `a01` and `b01` (batch mean)."""
    a = _image_embedding(clip, a01, "a01")
    b = _image_embedding(clip, b01, "b01")
    return float((a * b).sum(-1).mean())


def _direction_cosine(image_delta: Tensor, text_delta: Tensor) -> Tensor:
    """cos(image_delta, text_delta) per row; 0 where either change is (numerically) zero."""
    ni, nt = image_delta.norm(dim=-1), text_delta.norm(dim=-1)
    cos = (image_delta * text_delta).sum(-1) / (ni * nt).clamp(min=DIRECTION_EPS ** 2)
    # No change has no direction: it neither agrees nor disagrees with the text edit.
    return torch.where((ni < DIRECTION_EPS) | (nt < DIRECTION_EPS), torch.zeros_like(cos), cos)


@torch.no_grad()
def clip_directional_similarity(clip: ClipGuide, src01: Tensor, out01: Tensor, src_text: str,
                                out_text: str) -> float:
    """cos(CLIP(out) - CLIP(src), CLIP(out_text) - CLIP(src_text)), in [-1, 1].

    An identity edit (out == src), or identical texts, has no direction and scores 0, not NaN."""
    for name, text in (("src_text", src_text), ("out_text", out_text)):
        if not isinstance(text, str) or not text.strip():
            raise GuidedError(f"`{name}` must be a non-empty string, got {text!r}")
    image_delta = _image_embedding(clip, out01, "out01") - _image_embedding(clip, src01, "src01")
    texts = clip.encode_text([src_text, out_text])
    text_delta = (texts[1] - texts[0]).unsqueeze(0)
    return float(_direction_cosine(image_delta, text_delta).mean())


def _features(vgg: VGGFeatures, image01: Tensor, layers: Sequence[str], what: str) -> dict[str, Tensor]:
    image = _check_image(image01, what)
    param = next(vgg.parameters())
    return vgg(image.to(param.device, param.dtype), list(dict.fromkeys(layers)))


def _check_layers(layers: Sequence[str]) -> list[str]:
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise GuidedError("`layers` is empty: name at least one VGG layer")
    return layers


@torch.no_grad()
def gram_targets(vgg: VGGFeatures, styles01: Sequence[Tensor], layers: Sequence[str],
                 weights: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Per layer, the weighted mean Gram matrix of several style images (one image: its Gram)."""
    layers = _check_layers(layers)
    if not styles01:
        raise GuidedError("`styles01` is empty: give at least one style image")
    feats = [_features(vgg, style, layers, "styles01") for style in styles01]
    return blended_gram_targets(feats, weights, layers)


@torch.no_grad()
def gram_distance(vgg: VGGFeatures, a01: Tensor, b01: Tensor | dict[str, Tensor],
                  layers: Sequence[str]) -> float:
    """Mean over `layers` of MSE(Gram(VGG_l(a)), Gram(VGG_l(b))); `b01` may be precomputed targets.

    Gram matrices are divided by C*H*W (`guided.losses.gram_matrix`), so images of different sizes
    compare; texture statistics still depend on scale, so measure everything at one resolution."""
    layers = _check_layers(layers)
    targets = b01 if isinstance(b01, dict) else gram_targets(vgg, [b01], layers)
    feats = _features(vgg, a01, layers, "a01")
    return float(torch.stack([gram_loss(feats[layer], targets[layer]) for layer in layers]).mean())


@torch.no_grad()
def content_distance(vgg: VGGFeatures, a01: Tensor, b01: Tensor, layers: Sequence[str]) -> float:
    """Mean over `layers` of MSE(VGG_l(a), VGG_l(b)); `b01` is resized to `a01`'s size first."""
    layers = _check_layers(layers)
    b = _check_image(b01, "b01")
    if b.shape[-2:] != a01.shape[-2:]:
        b = F.interpolate(b, size=tuple(a01.shape[-2:]), mode="bilinear", align_corners=False, antialias=True)
    fa = _features(vgg, a01, layers, "a01")
    fb = _features(vgg, b, layers, "b01")
    return float(torch.stack([content_loss(fa[layer], fb[layer]) for layer in layers]).mean())


# ----------------------------------------------------------------------------------------- Scorer
class Scorer:
    """Every metric of a stylized image against one photo, its paintings and a prompt, with every target
    computed once: the prompt's and the caption's text embeddings, the photo's CLIP embedding and
    content features, the paintings' blended CLIP embedding and Gram targets. `score(image01)` is then
    one CLIP image pass and one VGG pass (Gram and content layers together), plus LPIPS where given.

    `models`: anything with `.clip` and `.vgg` (a `GuidanceModels`); a metric whose model, photo,
    painting or prompt is missing is None. Values equal the functions above on the same inputs."""

    def __init__(self, models, photo01: Tensor | None = None, *, paintings01: Sequence[Tensor] = (),
                 style_weights: Sequence[float] | None = None, prompt: str | None = None,
                 source_prompt: str = "a photo", lpips: Lpips | None = None,
                 gram_layers: Sequence[str] = (), content_layers: Sequence[str] = ()):
        from guided.config import GuidanceConfig
        from guided.validate import style_weights as check_weights

        defaults = GuidanceConfig()
        self.clip, self.vgg, self.lpips = models.clip, models.vgg, lpips
        self.gram_layers = _check_layers(gram_layers or defaults.gram_layers)
        self.content_layers = _check_layers(content_layers or defaults.content_layers)
        self.prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
        self.photo = _check_image(photo01, "photo01") if photo01 is not None else None
        self._content: dict[tuple[int, int], dict[str, Tensor]] = {}  # photo features per image size
        with torch.no_grad():
            clip_ready = self.clip is not None
            self.photo_embedding = (_image_embedding(self.clip, self.photo, "photo01")
                                    if clip_ready and self.photo is not None else None)
            self.text_embedding = self.text_delta = None
            if clip_ready and self.prompt is not None:
                texts = self.clip.encode_text([source_prompt, self.prompt])
                self.text_embedding, self.text_delta = texts[1:], (texts[1] - texts[0]).unsqueeze(0)
            self.style_embedding = self.grams = None
            if paintings01:
                weights = check_weights(style_weights, len(paintings01))
                paintings = [_check_image(p, "paintings01") for p in paintings01]
                if clip_ready:
                    self.style_embedding = self.clip.style_target([p.to(self.clip.mean.device) for p in paintings],
                                                                  weights)
                if self.vgg is not None:
                    self.grams = gram_targets(self.vgg, paintings, self.gram_layers, weights)

    def _photo_features(self, size: tuple[int, int]) -> dict[str, Tensor]:
        if size not in self._content:
            photo = self.photo
            if photo.shape[-2:] != size:  # as content_distance: the photo resized to the image
                photo = F.interpolate(photo, size=size, mode="bilinear", align_corners=False, antialias=True)
            self._content[size] = _features(self.vgg, photo, self.content_layers, "photo01")
        return self._content[size]

    @torch.no_grad()
    def score(self, image01: Tensor) -> dict[str, float | None]:
        """clip_text, clip_style, clip_direction, gram, content and lpips of `image01` ((1, 3, H, W) in [0, 1])."""
        x = _check_image(image01, "image01")
        out: dict[str, float | None] = dict.fromkeys(("clip_text", "clip_style", "clip_direction", "gram", "content",
                                                      "lpips"))
        if self.clip is not None:
            e = _image_embedding(self.clip, x, "image01")
            if self.text_embedding is not None:
                out["clip_text"] = float((100.0 * (e * self.text_embedding).sum(-1).clamp(min=0)).mean())
                if self.photo_embedding is not None:
                    out["clip_direction"] = float(_direction_cosine(e - self.photo_embedding, self.text_delta).mean())
            if self.style_embedding is not None:
                out["clip_style"] = float((e * self.style_embedding).sum(-1).mean())
        if self.vgg is not None:
            wanted = (self.gram_layers if self.grams is not None else []) + (
                self.content_layers if self.photo is not None else [])
            feats = _features(self.vgg, x, wanted, "image01") if wanted else {}
            if self.grams is not None:
                out["gram"] = float(torch.stack([gram_loss(feats[k], self.grams[k]) for k in self.gram_layers]).mean())
            if self.photo is not None:
                photo = self._photo_features(tuple(x.shape[-2:]))
                out["content"] = float(torch.stack([content_loss(feats[k], photo[k])
                                                    for k in self.content_layers]).mean())
        if self.lpips is not None and self.photo is not None:
            out["lpips"] = self.lpips(x, self.photo)
        return out


# ------------------------------------------------------------------------------------------ LPIPS
#: torchvision's ImageNet checkpoints LPIPS's linear layers were calibrated on, in order of
#: preference (AlexNet is LPIPS's recommended "forward" metric).
LPIPS_BACKBONES = (("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth"))


@dataclass
class Lpips:
    """An LPIPS model ready to score, or the reason it is not available (`model` None)."""

    model: torch.nn.Module | None
    note: str
    net: str | None = None

    def __call__(self, a01: Tensor, b01: Tensor) -> float | None:
        """LPIPS(a, b) averaged over the batch; None when unavailable. `b01` resized to `a01`."""
        if self.model is None:
            return None
        a, b = _check_image(a01, "a01"), _check_image(b01, "b01")
        if b.shape[-2:] != a.shape[-2:]:
            b = F.interpolate(b, size=tuple(a.shape[-2:]), mode="bilinear", align_corners=False, antialias=True)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return float(self.model(a.to(device) * 2 - 1, b.to(device) * 2 - 1).mean())


def load_lpips(hub_dir: str | Path | None = None) -> Lpips:
    """LPIPS from the `lpips` package's own linear weights and torchvision's ImageNet backbone
    found in the torch hub cache (`hub_dir`, default `torch.hub.get_dir()`).

    Never downloads and never uses a random backbone: when the package or the checkpoint is
    missing the result has `model=None` and a note saying what to put where."""
    try:
        import lpips  # noqa: F401  (optional dependency)
    except ImportError:
        return Lpips(None, "lpips: the `lpips` package is not installed (pip install lpips); lpips is null")
    folder = Path(hub_dir or torch.hub.get_dir()) / "checkpoints"
    for net, filename in LPIPS_BACKBONES:
        path = folder / filename
        if path.is_file():
            return Lpips(_build_lpips(net, path), f"lpips: LPIPS-{net} v0.1, backbone {path}", net)
    names = " or ".join(f for _, f in LPIPS_BACKBONES)
    return Lpips(None, f"lpips: needs torchvision's ImageNet {names} in {folder} (not found; nothing is "
                       "downloaded and a random backbone would be meaningless); lpips is null")


def _build_lpips(net: str, checkpoint: Path) -> torch.nn.Module:
    """lpips.LPIPS with a random-initialised backbone, then the real backbone weights loaded in."""
    import warnings

    import lpips

    from guided.models.checkpoints import load_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for `pretrained=False`
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    state = load_state_dict(checkpoint)
    # lpips splits torchvision's `features` into slices keeping the original indices: sliceK.I.* <- features.I.*
    mapped = {}
    for key in model.net.state_dict():
        index_and_param = key.split(".", 1)[1]
        source = f"features.{index_and_param}"
        if source not in state:
            raise GuidedError(f"LPIPS backbone '{checkpoint}' has no `{source}`: not a torchvision {net} checkpoint")
        mapped[key] = state[source]
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False)
