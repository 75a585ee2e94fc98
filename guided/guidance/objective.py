"""The guidance objective: CLIP text/style, VGG Gram and content, total variation, on an image.

`GuidedObjective` precomputes its targets once, then gives per-term values (`terms`), the
gradient of the weighted objective w.r.t. the image at a denoising step (`image_gradient`), and
the unweighted value of every term it can measure (`final_losses`). Pure torch: the diffusers
pipeline turns the image gradient into a latent update.

Terms (lower is better; each a mean over the batch):
    clip_text   spherical distance between CLIP(image views) and CLIP(prompt)
    clip_style  spherical distance between CLIP(image views) and the weighted, renormalised mean of
                CLIP(style images)
    gram        mean over `gram_layers` of MSE(Gram(VGG_l(image)), sum_i w_i Gram(VGG_l(style_i)))
    content     mean over `content_layers` of MSE(VGG_l(image), VGG_l(content image))
    tv          total variation of the image at its own resolution
CLIP and VGG see the image resized to `loss_size` on its long side (aspect kept); style and
content targets are computed at that same scale, since Gram statistics depend on scale.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from guided import validate
from guided.accel import autocast_for, resolve_mixed_precision
from guided.config import GuidanceConfig
from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.losses import blended_gram_targets, content_loss, gram_loss, spherical_distance, tv_loss
from guided.models.bundle import GuidanceModels
from guided.models.targets import digest, model_state

#: Which model each term needs, and what it needs as a target.
TERM_MODEL = {"clip_text": "clip", "clip_style": "clip", "gram": "vgg", "content": "vgg", "tv": None}
TERM_TARGET = {"clip_text": "prompt", "clip_style": "style image", "gram": "style image",
               "content": "content image", "tv": None}
_EPS = 1e-12


def _as_image(image: Tensor, what: str) -> Tensor:
    """A (1, 3, H, W) float32 image in [0, 1], or a GuidedError naming `what`."""
    if not isinstance(image, Tensor):
        raise GuidedError(f"`{what}` must be a tensor (1, 3, H, W) in [0, 1], got {type(image).__name__}")
    x = image.unsqueeze(0) if image.ndim == 3 else image
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3 or min(x.shape[-2:]) < 8:
        raise GuidedError(f"`{what}` must have shape (1, 3, H, W) with H, W >= 8, got {tuple(image.shape)}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise GuidedError(f"`{what}` holds NaN or inf values")
    if x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise GuidedError(f"`{what}` must hold values in [0, 1], got {x.min().item():.3g}..{x.max().item():.3g}")
    return x


def loss_view(image: Tensor, loss_size: int) -> Tensor:
    """`image` resized (differentiably) so its long side is `loss_size`, aspect kept."""
    h, w = image.shape[-2:]
    scale = loss_size / max(h, w)
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    if size == (h, w):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


class GuidedObjective:
    """The weighted guidance objective with its targets; see the module docstring for the terms.

    Terms with a weight > 0 but no target (no prompt, no style or content image) are dropped and
    noted in `notes`; a term with a target whose model is missing is an error when weighted and
    simply not measured otherwise.
    """

    def __init__(self, config: GuidanceConfig, models: GuidanceModels, *, prompt: str | None = None,
                 style_images: Sequence[Tensor] = (), style_weights: Sequence[float] | None = None,
                 content_image: Tensor | None = None, style_size: int | None = None):
        config.validate()
        if style_size is not None:
            validate.integer(style_size, "style_size", low=16)
        self.style_size = style_size  # long side of the style images' view (None: `config.loss_size`)
        self.config = config
        self.models = models
        self.notes: list[str] = []
        self.truncation: list[dict] = []
        self.prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
        styles = [_as_image(s, f"style_images[{i}]") for i, s in enumerate(style_images)]
        self.style_weights = validate.style_weights(style_weights, len(styles)) if styles else []
        self.content_image = _as_image(content_image, "content_image") if content_image is not None else None
        self.available_terms = self._select_terms(bool(self.prompt), bool(styles), self.content_image is not None)
        self._generator = torch.Generator()
        if config.seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(config.seed)
        self._rms: dict[str, Tensor] = {}  # per-term gradient RMS of the last measured step
        self._guided_steps = 0
        with torch.no_grad(), _float32(self._device()):
            self._precompute(styles)

    # -- construction -------------------------------------------------------------------------

    def _select_terms(self, has_prompt: bool, has_style: bool, has_content: bool) -> tuple[str, ...]:
        has_target = {"clip_text": has_prompt, "clip_style": has_style, "gram": has_style,
                      "content": has_content, "tv": True}
        available = []
        for name in GUIDANCE_TERMS:
            weight = self.config.weight(name)
            if not has_target[name]:
                if weight > 0:
                    self.notes.append(f"{name}: weight {weight:g} but no {TERM_TARGET[name]}; term dropped")
                continue
            model = TERM_MODEL[name]
            if model is not None and getattr(self.models, model) is None:
                if weight > 0:
                    raise GuidedError(f"guidance term `{name}` has weight {weight:g} but no {model.upper()} model "
                                      f"was given (`guidance_models.{model}` is None)")
                self.notes.append(f"{name}: no {model.upper()} model; not measured")
                continue
            available.append(name)
        return tuple(available)

    def _device(self) -> torch.device:
        for module in (self.models.clip, self.models.vgg):
            if module is not None:
                for tensor in list(module.parameters()) + list(module.buffers()):
                    return tensor.device
        return torch.device("cpu")

    def _vgg(self, image: Tensor, layers: Iterable[str], mixed_precision: str = "no") -> dict[str, Tensor]:
        vgg = self.models.vgg
        dtype = next(vgg.parameters()).dtype
        with autocast_for(vgg, mixed_precision, image.device):
            return vgg(image.to(dtype), list(dict.fromkeys(layers)))

    def _precompute(self, styles: list[Tensor]) -> None:
        device, size, cache = self._device(), self.config.loss_size, self.models.targets
        clip, vgg = self.models.clip, self.models.vgg
        self.text_target: Tensor | None = None
        self.style_target: Tensor | None = None
        self.gram_targets: dict[str, Tensor] = {}
        if "clip_text" in self.available_terms:
            self.text_target, self.truncation = cache.get(
                ("clip_text", self.prompt, model_state(clip)),
                lambda: (clip.encode_text([self.prompt]), list(clip.last_truncation)))
            for t in self.truncation:
                self.notes.append(f"clip_text: prompt truncated to {t['context_length']} tokens (it has {t['tokens']})")
        views = [loss_view(s.to(device), self.style_size or size) for s in styles]
        key = (digest(views), tuple(self.style_weights))
        if "clip_style" in self.available_terms:
            self.style_target = cache.get(("clip_style", *key, model_state(clip)),
                                          lambda: clip.style_target(views, self.style_weights))
        if "gram" in self.available_terms:
            layers = list(self.config.gram_layers)
            self.gram_targets = cache.get(
                ("gram", *key, tuple(layers), model_state(vgg)),
                lambda: blended_gram_targets([self._vgg(v, layers) for v in views], self.style_weights, layers))
        self._content_digest = digest([self.content_image]) if self.content_image is not None else None

    def _content_target(self, size: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
        layers = tuple(self.config.content_layers)

        def compute() -> dict[str, Tensor]:
            image = F.interpolate(self.content_image.to(device), size=size, mode="bilinear",
                                  align_corners=False, antialias=True)
            return {k: v.float() for k, v in self._vgg(image, layers).items()}

        return self.models.targets.get(("content", self._content_digest, size, layers, model_state(self.models.vgg)),
                                       compute)

    # -- evaluation ---------------------------------------------------------------------------

    def terms(self, image01: Tensor, names: Iterable[str] | None = None, *,
              generator: torch.Generator | None = None, augment: bool | None = None,
              content: Tensor | None = None, mixed_precision: str = "no") -> dict[str, Tensor]:
        """Unweighted float32 value of each named term (default: all available), differentiable.

        One CLIP pass serves both CLIP terms and one VGG pass serves `gram` and `content`.
        `generator`/`augment` override the objective's cutout generator and `cutout_augment`.
        `content`: one content image per image of the batch, same shape as `image01`, instead of the
        objective's own content image (a feed-forward network trains on a different photo per sample);
        then `content` is available even when the objective was built without a content image.
        `mixed_precision` ('no', 'bf16', 'fp16'): autocast of the CLIP and VGG passes over `image01`
        (targets, embeddings, Gram matrices and losses stay float32).
        """
        names = list(self.available_terms if names is None else names)
        available = self.available_terms + (("content",) if content is not None and self.models.vgg is not None
                                            else ())
        for name in names:
            if name not in available:
                raise GuidedError(f"guidance term {name!r} is not available here; available: "
                                  f"{', '.join(self.available_terms) or 'none'}")
        if image01.ndim != 4 or image01.shape[1] != 3:
            raise GuidedError(f"`image01` must be (B, 3, H, W), got shape {tuple(image01.shape)}")
        cfg, out = self.config, {}
        with _float32(image01.device):
            x = image01.float()
            view = loss_view(x, cfg.loss_size) if any(n != "tv" for n in names) else x
            if {"clip_text", "clip_style"} & set(names):
                emb = self.models.clip.encode_image(
                    view, cutouts=cfg.cutouts, generator=generator or self._generator,
                    augment=cfg.cutout_augment if augment is None else augment, mixed_precision=mixed_precision)
                if "clip_text" in names:
                    out["clip_text"] = spherical_distance(emb, self.text_target.to(emb.device)).mean()
                if "clip_style" in names:
                    out["clip_style"] = spherical_distance(emb, self.style_target.to(emb.device)).mean()
            if {"gram", "content"} & set(names):
                layers = ((cfg.gram_layers if "gram" in names else ())
                          + (cfg.content_layers if "content" in names else ()))
                feats = self._vgg(view, layers, mixed_precision)
                if "gram" in names:
                    out["gram"] = torch.stack([gram_loss(feats[layer], self.gram_targets[layer].to(view.device))
                                               for layer in cfg.gram_layers]).mean()
                if "content" in names and content is not None:
                    if content.shape != image01.shape:
                        raise GuidedError(f"`content` must have the shape of `image01` {tuple(image01.shape)}, "
                                          f"got {tuple(content.shape)}")
                    with torch.no_grad():
                        target = self._vgg(loss_view(content.float(), cfg.loss_size), cfg.content_layers)
                elif "content" in names:
                    target = self._content_target(tuple(view.shape[-2:]), view.device)
                if "content" in names:
                    out["content"] = torch.stack([content_loss(feats[layer], target[layer])
                                                  for layer in cfg.content_layers]).mean()
            if "tv" in names:
                out["tv"] = tv_loss(x)
        return {name: out[name] for name in names}

    def image_gradient(self, image01: Tensor, *, step: int,
                       num_steps: int) -> tuple[Tensor, dict[str, float], list[str]]:
        """Gradient w.r.t. `image01` of the weighted objective at 0-based `step` of `num_steps`.

        Returns (gradient, same shape as `image01`, float32; {term: unweighted value}; notes).
        Descending it (image - lr * gradient) lowers the objective. With `normalize_gradients`
        each term's gradient is scaled to unit RMS per image before weighting, so a single term's
        weighted gradient has RMS equal to its weight; without it, the gradient is that of the
        batch's sum of weighted terms, so each image's gradient does not depend on the batch size.
        A term whose gradient is not finite is skipped and noted; no active term gives zeros.
        """
        active = [n for n in self.config.active_terms(step, num_steps) if n in self.available_terms]
        total = torch.zeros(image01.shape, dtype=torch.float32, device=image01.device)
        if not active:
            return total, {}, []
        notes: list[str] = []
        precision = resolve_mixed_precision(self.config.mixed_precision, image01.device)
        with torch.enable_grad():
            x = image01.detach().float().requires_grad_(True)
            values = self.terms(x, active, mixed_precision=precision)
            if self.config.normalize_gradients and self._cached_scales_apply(x, active):
                return self._gradient_from_cached_scales(x, values, active)
            if self.config.normalize_gradients:
                grads = self._per_term_grads(x, values, active)
            else:  # x batch size: each image's gradient does not depend on how many share the batch
                loss = x.shape[0] * sum(self.config.weight(n) * values[n] for n in active)
                (g,) = torch.autograd.grad(loss, x, allow_unused=True)
                grads = None if g is not None and not torch.isfinite(g).all() else {"all": g}
                if grads is None:  # find the culprit on a fresh graph; a rare path
                    values = self.terms(x, active, mixed_precision=precision)
                    grads = self._per_term_grads(x, values, active)
        for name, g in grads.items():
            if g is None:
                continue
            if not torch.isfinite(g).all():
                notes.append(f"{name}: non-finite gradient, skipped")
                continue
            if self.config.normalize_gradients:
                rms = g.pow(2).mean(dim=tuple(range(1, g.ndim)), keepdim=True).sqrt()
                self._rms[name] = rms.detach()
                g = self.config.weight(name) * g / (rms + _EPS)
            elif name != "all":
                g = x.shape[0] * self.config.weight(name) * g
            total += g
        floats = {n: float(v.detach()) for n, v in values.items()}
        notes += [f"{n}: non-finite value {v}" for n, v in floats.items() if v != v or abs(v) == float("inf")]
        return total.detach(), floats, notes

    def _cached_scales_apply(self, x: Tensor, active: list[str]) -> bool:
        """Whether this step may reuse the last measured per-term RMS (see `GuidanceConfig.norm_every`).

        Only with several active terms: one term's exact scale costs no more than a reused one (one
        backward either way), and keeps its step exactly the size its weight asks for."""
        self._guided_steps += 1
        every = self.config.norm_every
        return (every > 1 and x.shape[0] == 1 and len(active) > 1 and (self._guided_steps - 1) % every != 0
                and all(n in self._rms for n in active))

    def _gradient_from_cached_scales(self, x: Tensor, values: dict[str, Tensor],
                                     active: list[str]) -> tuple[Tensor, dict[str, float], list[str]]:
        """One backward of sum_n weight_n * value_n / rms_n, with rms_n from the last measured step."""
        usable = [n for n in active if values[n].requires_grad and torch.isfinite(values[n])]
        notes = [f"{n}: non-finite value, skipped" for n in active if not torch.isfinite(values[n])]
        total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        if usable:
            loss = sum(self.config.weight(n) * values[n] / (self._rms[n].flatten()[0] + _EPS) for n in usable)
            (g,) = torch.autograd.grad(loss, x, allow_unused=True)
            if g is not None and torch.isfinite(g).all():
                total = g.detach()
            elif g is not None:  # measure afresh next step, where a non-finite term is found and skipped
                self._rms.clear()
                notes.append("cached-scale gradient not finite: this step skipped")
        return total, {n: float(v.detach()) for n, v in values.items()}, notes

    @staticmethod
    def _per_term_grads(x: Tensor, values: dict[str, Tensor], names: list[str]) -> dict[str, Tensor | None]:
        grads = {}
        for i, name in enumerate(names):
            value = values[name]
            if not value.requires_grad:
                grads[name] = None
                continue
            (grads[name],) = torch.autograd.grad(value, x, retain_graph=i < len(names) - 1, allow_unused=True)
        return grads

    def final_losses(self, image01: Tensor) -> dict[str, float]:
        """Unweighted value of every available term, whatever the weights, without gradients.

        CLIP sees the same cutouts on every call (drawn from a fixed seed, no augmentation noise),
        so two images are measured on identical views.
        """
        seed = self.config.seed if self.config.seed is not None else 0
        with torch.no_grad():
            values = self.terms(image01, self.available_terms, generator=torch.Generator().manual_seed(seed),
                                augment=False)
        return {name: float(v) for name, v in values.items()}


class _float32:
    """Autocast off: CLIP similarities, Gram matrices and losses run in float32."""

    def __init__(self, device: torch.device | str):
        kind = torch.device(device).type
        self._ctx = torch.autocast(device_type=kind, enabled=False) if kind in ("cpu", "cuda", "xpu", "mps") else None

    def __enter__(self):
        if self._ctx is not None:
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        return False
