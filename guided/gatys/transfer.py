"""Classic neural style transfer (Gatys et al. 2016), as taught in Dive into Deep Learning §14.12.

The image itself is the parameter. One VGG forward pass gives every content and style layer;
the loss terms are the chapter's `compute_loss`: weighted content MSE, weighted Gram MSE summed
over style layers, weighted total variation of the normalised image. Gram matrices and losses
are float32 even when the network runs under bf16 autocast.

    >>> from guided.gatys.transfer import stylize
    >>> result = stylize("photo.jpg", "painting.jpg", preset="d2l", backbone="vgg19-random")
    >>> result.image.save("out.png"); result.history[-1]["total"]
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from guided import validate
from guided.color import transfer_luminance
from guided.errors import GuidedError
from guided.gatys.images import initial_image, output_size, preprocess, scaled, style_size
from guided.gatys.presets import OPTIMIZER_DEFAULTS, PRESETS, GatysPreset, get_preset, override
from guided.io.images import describe_source
from guided.losses import blended_gram_targets, content_loss, gram_loss, tv_loss
from guided.models.vgg import BackboneInfo, VGGFeatures, min_side, resolve_backbone
from guided.models.vgg import imagenet_denormalize as denormalize
from guided.models.vgg import imagenet_normalize as normalize

logger = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image


class GatysObjective(nn.Module):
    """The chapter's `compute_loss` over one shared VGG pass; targets held as buffers."""

    def __init__(self, features: VGGFeatures, preset: GatysPreset):
        super().__init__()
        self.features = features
        self.content_layers = list(preset.content_layers)
        self.style_layers = list(preset.style_layers)
        self.layer_weights = list(preset.layer_weights or [1.0] * len(self.style_layers))
        self.weights = (preset.content_weight, preset.style_weight, preset.tv_weight)
        self.relative = preset.relative_losses
        self.content_targets: dict[str, Tensor] = {}
        self.gram_targets: dict[str, Tensor] = {}
        self.scales: dict[str, float] = {}  # 1 per layer, or the mean square of its target (relative losses)

    def extra_repr(self) -> str:
        return f"content={self.content_layers}, style={self.style_layers}, weights={self.weights}"

    def layers(self) -> list[str]:
        return list(dict.fromkeys(self.content_layers + self.style_layers))

    @torch.no_grad()
    def set_targets(self, content: Tensor, styles: list[Tensor], blend: list[float], autocast) -> None:
        """Content features of `content` and the blend-weighted Gram matrices of `styles`."""
        with autocast():
            feats = self.features(content, self.content_layers, normalized=True)
        self.content_targets = {k: v.float() for k, v in feats.items()}
        style_feats = []
        for style in styles:
            with autocast():
                style_feats.append(self.features(style, self.style_layers, normalized=True))
        self.gram_targets = blended_gram_targets(style_feats, blend, self.style_layers)
        targets = {**self.content_targets, **self.gram_targets}
        # Relative losses divide each layer's MSE by its target's mean square: the weights then mean
        # the same for any network, whatever the scale of its activations (random or pretrained).
        self.scales = {k: float(t.float().square().mean()) + 1e-12 if self.relative else 1.0
                       for k, t in targets.items()}

    def forward(self, x: Tensor, autocast) -> dict[str, Tensor]:
        """{'content', 'style', 'tv', 'total'}: the weighted terms, float32, computed outside autocast."""
        with autocast():
            feats = self.features(x, self.layers(), normalized=True)
        cw, sw, tw = self.weights
        zero = x.new_zeros((), dtype=torch.float32)
        content = sum((content_loss(feats[k], self.content_targets[k]) * (cw / self.scales[k])
                       for k in self.content_layers), zero)
        style = sum((gram_loss(feats[k], self.gram_targets[k]) * (sw * lw / self.scales[k])
                     for k, lw in zip(self.style_layers, self.layer_weights)), zero)
        tv = tv_loss(x) * tw
        return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


@dataclass
class GatysResult:
    """What `stylize` returns."""

    image: Image.Image
    #: One dict per iteration: content, style, tv, total (weighted, before that iteration's step), iteration, size.
    history: list[dict]
    metadata: dict
    backbone_info: BackboneInfo
    preset: GatysPreset
    stopped_early: bool = False
    stop_reason: str | None = None
    #: True when some scale's objective did not fall (said in `notes` and on the console).
    stalled: bool = False
    #: Optimiser events: L-BFGS memory resets, an Adam fallback, a scale that did not progress.
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tensor: Tensor | None = field(default=None, repr=False)  # final image, normalised space

    def save(self, path: str | Path, *, sidecar: bool = True) -> Path:
        """Write the PNG with its manifest (PNG text chunk + JSON sidecar)."""
        from guided.io.images import save_image

        return save_image(self.image, path, metadata=self.metadata, sidecar=sidecar)


def _make_optimizer(x: Tensor, p: GatysPreset):
    if p.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=p.lr)
    else:
        # One quasi-Newton step per call keeps progress, history and the NaN check per iteration; the
        # curvature memory persists across calls. A strong-Wolfe line search: without it the first
        # steps overshoot by orders of magnitude (seen with ImageNet VGG-16) or diverge outright when
        # the L1 total variation dominates (seen with random VGG-19).
        opt = torch.optim.LBFGS([x], lr=p.lr, max_iter=1, history_size=50, tolerance_grad=0.0,
                                tolerance_change=0.0, line_search_fn="strong_wolfe")
    sched = torch.optim.lr_scheduler.StepLR(opt, p.lr_step, p.lr_gamma) if p.lr_step > 0 else None
    return opt, sched


def _iterations_per_scale(p: GatysPreset) -> list[int]:
    if p.multiscale == 1:
        return [p.iterations]
    if p.final_fraction is None:
        per = [p.iterations // p.multiscale] * p.multiscale
        return per[:-1] + [per[-1] + p.iterations - sum(per)]
    final = round(p.iterations * p.final_fraction)
    coarse = p.iterations - final
    per = [coarse // (p.multiscale - 1)] * (p.multiscale - 1)
    per[-1] += coarse - sum(per)
    return per + [final]


@dataclass
class OptimizationRun:
    """Mutable state of one optimisation run."""

    objective: GatysObjective
    autocast: Callable
    history: list[dict] = field(default_factory=list)
    last_good: Tensor | None = None
    stop_reason: str | None = None
    evaluations: int = 0
    notes: list[str] = field(default_factory=list)  # optimiser events a user should know about
    stalled: bool = False  # some scale ended without progress even after the guards below


def optimize(run: OptimizationRun, x: Tensor, p: GatysPreset, steps: int, bar, on_step) -> Tensor:
    """Optimise `x` (normalised space) for `steps` iterations; stops at the first non-finite loss.

    History gets one entry per iteration: the losses of the iterate before its step. An L-BFGS line
    search evaluates more points per step; those are counted in `evaluations`, not recorded.
    """
    x = x.detach().contiguous().clone().requires_grad_(True)
    opt, sched = _make_optimizer(x, p)
    first = len(run.history)
    size = list(x.shape[-2:])
    step = {"first": True}

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        losses = run.objective(x, run.autocast)
        run.evaluations += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            run.stop_reason = (f"non-finite loss at iteration {len(run.history)} ({values}); "
                               "kept the last image with a finite loss")
            return losses["total"].detach()
        if step["first"]:
            step["first"] = False
            run.last_good = x.detach().clone()
            run.history.append({"iteration": len(run.history), **values, "size": size})
        losses["total"].backward()
        return losses["total"]

    adam, failed_in_a_row = p.optimizer == "adam", 0
    for _ in range(steps):
        step["first"] = True
        if adam:
            closure()
            if run.stop_reason is None:
                opt.step()
        else:
            before = x.detach().clone()
            opt.step(closure)
            failed_in_a_row = failed_in_a_row + 1 if torch.equal(before, x.detach()) else 0
            if failed_in_a_row and run.stop_reason is None:
                opt, sched, adam = _after_a_failed_step(run, opt, sched, x, failed_in_a_row, size)
        if run.stop_reason is not None:
            break
        run.history[-1]["evaluations"] = run.evaluations
        if sched is not None:
            sched.step()
        bar.update(1)
        bar.set_postfix(loss=f"{run.history[-1]['total']:.4g}", refresh=False)
        on_step(len(run.history), x)
    _check_progress(run, first, size)
    return x.detach() if run.stop_reason is None else run.last_good


def _optimize_prox(run: OptimizationRun, x: Tensor, p: GatysPreset, steps: int, bar, on_step) -> Tensor:
    """`optimize` for `optimizer="prox"`: proximal gradient (`guided.gatys.prox`); `lr` is the RMS
    move of its first gradient step on the smooth terms, in normalised units."""
    from guided.gatys.prox import ProxGradient

    first, size = len(run.history), list(x.shape[-2:])

    def evaluate(z: Tensor):
        losses = run.objective(z, run.autocast)
        return losses["content"] + losses["style"], {k: float(v.detach()) for k, v in losses.items()}

    try:
        zero, one = torch.zeros(1, 3, 1, 1, device=x.device), torch.ones(1, 3, 1, 1, device=x.device)
        opt = ProxGradient(x.detach().float().contiguous(), evaluate, run.objective.weights[2], p.lr,
                           bounds=(normalize(zero), normalize(one)))
    except FloatingPointError as err:
        run.stop_reason = f"{err} at iteration {len(run.history)}"
        return x.detach()
    for _ in range(steps):
        run.history.append({"iteration": len(run.history), **opt.point.values, "size": size})
        if not opt.step():
            run.notes.append(f"proximal gradient found no descent at iteration {len(run.history) - 1} at "
                             f"{size[0]}x{size[1]}: no step size lowered the objective, this scale stopped")
            logger.info(run.notes[-1])
            break
        run.history[-1]["evaluations"] = run.evaluations + opt.evaluations
        bar.update(1)
        bar.set_postfix(loss=f"{run.history[-1]['total']:.4g}", refresh=False)
        on_step(len(run.history), opt.point.x.detach())
    run.evaluations += opt.evaluations
    _check_progress(run, first, size)
    return opt.point.x.detach()


def _check_progress(run: OptimizationRun, first: int, size: list[int]) -> None:
    """A scale whose objective did not fall is said so, in the result and on the console."""
    totals = [h["total"] for h in run.history[first:]]
    if run.stop_reason is None and len(totals) > 1 and not totals[-1] < totals[0]:
        run.stalled = True
        run.notes.append(f"the objective did not fall at {size[0]}x{size[1]} ({totals[0]:.4g} -> {totals[-1]:.4g} "
                         f"over {len(totals)} iterations)")
        logger.warning("gatys: %s", run.notes[-1])


#: Adam's step size when it takes over from a failed L-BFGS: a tenth of its own default (0.3 on the
#: normalised image), since it refines an image L-BFGS already brought near a minimum.
FALLBACK_LR_SCALE = 0.1


def _after_a_failed_step(run: OptimizationRun, opt, sched, x: Tensor, failed_in_a_row: int, size: list[int]):
    """The L-BFGS line search found no decrease: the image did not move.

    torch's L-BFGS would rebuild the same direction from the same curvature memory on the next call
    and never move again (the stall seen on real photos: the loss flat for 90 iterations while the
    progress bar counted). First the memory is cleared, so the next step starts afresh along the
    steepest descent; if that fails too (a kink of the L1 total variation, where no line search
    along the gradient finds a decrease), the rest of this scale runs on Adam, which steps through
    kinks. Returns (optimizer, scheduler, now_adam)."""
    where = f"iteration {len(run.history) - 1} at {size[0]}x{size[1]}"
    if failed_in_a_row == 1:
        opt.state.clear()
        run.notes.append(f"L-BFGS found no descent at {where}: curvature memory reset")
        logger.info(run.notes[-1])
        return opt, sched, False
    lr = OPTIMIZER_DEFAULTS["adam"]["lr"] * FALLBACK_LR_SCALE
    run.notes.append(f"L-BFGS found no descent again at {where}: Adam (lr {lr:g}) for the rest of this scale")
    logger.info(run.notes[-1])
    return torch.optim.Adam([x], lr=lr), None, True


def _load_inputs(content: ImageInput, styles: ImageInput | Sequence[ImageInput]):
    from guided.io.images import load_image

    style_list = [styles] if isinstance(styles, (str, Path, Image.Image)) else list(styles)
    if not style_list:
        raise GuidedError("`styles` is empty: give at least one style image")
    content_img = load_image(content, what="content image")
    style_imgs = [load_image(s, what="style image") for s in style_list]
    return content_img, style_imgs, style_list


def _check_reaches_layers(content_img: Image.Image, p: GatysPreset) -> None:
    """Every scale must reach the deepest VGG layer with at least one pixel; else say so up front."""
    need, layer = min_side(tuple(p.style_layers) + tuple(p.content_layers))
    h, w = output_size(content_img, p.size)
    if min(h, w) < need:
        width, height = content_img.size
        hint = (f"raise `size` to at least {math.ceil(need * max(width, height) / min(width, height))}"
                if not isinstance(p.size, tuple) else f"give an (h, w) of at least {need} each")
        raise GuidedError(f"`size` {p.size} makes the {width}x{height} content image {w}x{h} px, and VGG layer "
                          f"{layer} needs at least {need} px a side: {hint}, or crop the photo")


def stylize(content: ImageInput, styles: ImageInput | Sequence[ImageInput], *,
            preset: str | GatysPreset = "default",
            backbone: str | Path | nn.Module | None = None,
            size: int | tuple[int, int] | None = None,
            iterations: int | None = None,
            optimizer: str | None = None,
            mixed_precision: str | None = None,
            seed: int = 0,
            device: str | torch.device | None = None,
            style_weights: Sequence[float] | None = None,
            preserve_color: bool | None = None,
            init: str | None = None,
            multiscale: int | None = None,
            layer_weights: Sequence[float] | None = None,
            style_scale: float | None = None,
            content_weight: float | None = None,
            style_weight: float | None = None,
            tv_weight: float | None = None,
            lr: float | None = None,
            save_every: int | None = None,
            save_dir: str | Path | None = None,
            progress: bool = True,
            callback: Callable[[int, Tensor, dict], None] | None = None) -> GatysResult:
    """Paint `content` in the style of `styles` by optimising the image (Gatys et al. 2016).

    Every option left at None takes the value of `preset` (`guided.gatys.presets.PRESETS`).
    `styles` is one image or several, mixed by `style_weights` (blended Gram targets). `size` is the
    long side (int) or an exact (h, w). `backbone`: see `guided.models.vgg.resolve_backbone`. `callback`
    gets (iteration, image in [0, 1], last losses) after every step.
    """
    # 1. Check inputs and resolve the options against the preset.
    p = override(get_preset(preset), size=size, iterations=iterations, optimizer=optimizer,
                 mixed_precision=mixed_precision, preserve_color=preserve_color, init=init,
                 multiscale=multiscale, layer_weights=layer_weights, style_scale=style_scale,
                 content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight, lr=lr)
    if save_every is not None and (save_every < 1 or save_dir is None):
        raise GuidedError(f"`save_every` must be a positive int with `save_dir` set, got {save_every!r}, "
                          f"save_dir={save_dir!r}")
    from guided.accel import make_accelerator

    accelerator = make_accelerator(device, p.mixed_precision)  # fp16 on CPU -> GuidedError
    content_img, style_imgs, style_sources = _load_inputs(content, styles)
    _check_reaches_layers(content_img, p)
    blend = validate.style_weights(style_weights, len(style_imgs))

    # 2. The network: resolved weights (never silently random), one shared forward pass.
    net, info = resolve_backbone(backbone, seed=seed)
    features = VGGFeatures(net, info.arch, pool=p.pool).to(accelerator.device)
    objective = GatysObjective(features, p)
    autocast = accelerator.autocast if p.mixed_precision != "no" else contextlib.nullcontext
    run = OptimizationRun(objective, autocast)

    # 3. Coarse-to-fine: each scale halves the next; the image is carried over by bilinear upsampling.
    final_hw = output_size(content_img, p.size)
    factors = [0.5 ** k for k in reversed(range(p.multiscale))]
    steps = _iterations_per_scale(p)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    saves = Path(save_dir) if save_dir is not None else None

    def on_step(i: int, x: Tensor) -> None:
        if saves is not None and save_every and i % save_every == 0:
            from guided.io.images import save_image, tensor_to_pil

            saves.mkdir(parents=True, exist_ok=True)
            save_image(tensor_to_pil(denormalize(x.detach().cpu())), saves / f"gatys_{i:05d}.png",
                       metadata={"kind": "gatys-intermediate", "iteration": i, "preset": p.name}, sidecar=False)
        if callback is not None:
            callback(i, denormalize(x.detach()), run.history[-1])

    from tqdm.auto import tqdm

    x: Tensor | None = None
    with tqdm(total=p.iterations, desc=f"gatys {p.name}", unit="it", disable=not progress,
              file=sys.stderr) as bar:
        for factor, n in zip(factors, steps):
            hw = scaled(final_hw, factor) if factor < 1 else final_hw
            content_x = preprocess(content_img, hw).to(accelerator.device)
            style_xs = [preprocess(s, style_size(s, hw, p.style_scale)).to(accelerator.device) for s in style_imgs]
            objective.set_targets(content_x, style_xs, blend, autocast)
            if x is None:
                x = initial_image(p.init, content_x.cpu(), [s.cpu() for s in style_xs], blend,
                                  generator).to(accelerator.device)
            else:
                x = nn.functional.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            x = (_optimize_prox if p.optimizer == "prox" else optimize)(run, x, p, n, bar, on_step)
            if run.stop_reason is not None:
                break
    seconds = time.perf_counter() - start
    if run.stop_reason is not None:
        warnings.warn(f"gatys: {run.stop_reason}", RuntimeWarning, stacklevel=2)
        logger.warning("gatys stopped early: %s", run.stop_reason)

    # 4. Postprocess: de-normalise, clamp, optionally keep the photo's colours.
    from guided.io.images import tensor_to_pil

    out01 = denormalize(x.detach().float().cpu())
    if p.preserve_color:
        out01 = transfer_luminance(out01, denormalize(preprocess(content_img, tuple(out01.shape[-2:]))))
    image = tensor_to_pil(out01)
    metadata = _manifest(p, info, accelerator, seed, blend, content, style_sources, run, seconds)
    return GatysResult(image=image, history=run.history, metadata=metadata, backbone_info=info, preset=p,
                       stopped_early=run.stop_reason is not None, stop_reason=run.stop_reason,
                       stalled=run.stalled, notes=list(run.notes),
                       seconds=seconds, tensor=x.detach())


def _manifest(p: GatysPreset, info: BackboneInfo, accelerator, seed: int, blend: list[float],
              content: ImageInput, styles: list[ImageInput], run: OptimizationRun, seconds: float) -> dict:
    from guided.io.manifest import build_manifest

    parameters = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()}
    parameters.update(preset=p.name, content=describe_source(content), styles=[describe_source(s) for s in styles],
                      style_weights=blend)
    return build_manifest(kind="gatys", parameters=parameters, seed=seed,
                          models={"backbone": {**asdict(info), "description": info.describe()}},
                          device=str(accelerator.device), precision=p.mixed_precision,
                          losses=run.history, seconds=round(seconds, 3),
                          extra={"stopped_early": run.stop_reason is not None, "stop_reason": run.stop_reason,
                                 "stalled": run.stalled, "notes": list(run.notes), "random_backbone": info.random})


__all__ = ["stylize", "GatysResult", "GatysObjective", "GatysPreset", "PRESETS", "plot_history"]


def plot_history(history: list[dict], path: str | Path) -> Path:
    """Loss curves (log scale, one line per term) as a PNG; see `guided.io.plots`."""
    from guided.io.plots import plot_history as _plot

    return _plot(history, path)
