"""Loss functions of neural style transfer and CLIP guidance, as plain torch functions.

Every function computes in float32, whatever the dtype of its inputs: Gram matrices overflow
in float16 (a known failure of the classic tools), and the small differences that guidance
follows vanish in bfloat16.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from guided.validate import style_weights


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix of a feature map (B, C, H, W) -> (B, C, C), divided by C*H*W (Gatys et al. 2016)."""
    b, c, h, w = features.shape
    flat = features.float().reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between feature maps (Gatys et al. 2016, eq. 1, as a mean)."""
    return F.mse_loss(features.float(), target.float().expand_as(features))


def gram_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared error between the Gram matrix of `features` and a target Gram matrix."""
    gram = gram_matrix(features)
    return F.mse_loss(gram, target_gram.float().expand_as(gram))


def tv_loss(image: Tensor) -> Tensor:
    """Total variation 0.5 * (mean |dh| + mean |dw|), as in Dive into Deep Learning §14.12."""
    image = image.float()
    dh = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
    dw = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
    return 0.5 * (dh + dw)


def _differences(z: Tensor) -> tuple[Tensor, Tensor]:
    return z[:, :, 1:, :] - z[:, :, :-1, :], z[:, :, :, 1:] - z[:, :, :, :-1]


def _adjoint_differences(ph: Tensor, pw: Tensor) -> Tensor:
    """D^T p for the forward differences of `_differences` (zero flux at the borders)."""
    out = F.pad(ph, (0, 0, 1, 0)) - F.pad(ph, (0, 0, 0, 1))
    return out + F.pad(pw, (1, 0, 0, 0)) - F.pad(pw, (0, 1, 0, 0))


def tv_prox(v: Tensor, strength: float, *, dual: tuple[Tensor, Tensor] | None = None,
            iterations: int = 50) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The proximal operator of `strength * tv_loss`: argmin_z 1/2 |z - v|^2 + strength * tv_loss(z).

    `tv_loss` is anisotropic (|dh| and |dw| apart), so its dual variables live in boxes and the
    problem is solved by accelerated projected gradient on the dual (Beck & Teboulle 2009's fast
    gradient projection; the dual step 1/8 is 1/||D||^2 for 2-D forward differences). `dual`
    warm-starts from an earlier solution (scaled to this strength by the caller). Returns
    (z, dual) in float32.
    """
    v = v.float()
    bound_h = strength * 0.5 / max(v[:, :, 1:, :].numel(), 1)  # tv_loss averages each direction
    bound_w = strength * 0.5 / max(v[:, :, :, 1:].numel(), 1)
    if dual is None:
        dual = (v.new_zeros(v[:, :, 1:, :].shape), v.new_zeros(v[:, :, :, 1:].shape))
    ph, pw = dual
    qh, qw, t = ph, pw, 1.0
    for _ in range(iterations):
        gh, gw = _differences(v - _adjoint_differences(qh, qw))
        nh, nw = (qh + gh / 8).clamp(-bound_h, bound_h), (qw + gw / 8).clamp(-bound_w, bound_w)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        qh, qw = nh + (t - 1) / t_next * (nh - ph), nw + (t - 1) / t_next * (nw - pw)
        ph, pw, t = nh, nw, t_next
    return v - _adjoint_differences(ph, pw), (ph, pw)


def spherical_distance(a: Tensor, b: Tensor) -> Tensor:
    """Squared great-circle distance between embeddings, 2*arcsin(|a-b|/2)^2 on unit vectors.

    The form CLIP-guided diffusion uses (Crowson): it is 0 for equal directions and grows
    smoothly, unlike 1 - cos whose gradient vanishes near the optimum.
    """
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    return (a - b).norm(dim=-1).div(2).clamp(max=1.0).arcsin().pow(2).mul(2)


def blended_gram_targets(style_features: Sequence[dict[str, Tensor]], weights: Sequence[float] | None,
                         layers: Sequence[str]) -> dict[str, Tensor]:
    """One target Gram matrix per layer: the weighted mean over several style images (float32).

    The one blend of style images in guided: diffusion guidance, the classic path and the compare
    metrics all call it. `weights` are relative (None: equal); see `guided.validate.style_weights`."""
    weights = style_weights(weights, len(style_features), name="weights")
    total = sum(weights)
    return {
        layer: sum(w / total * gram_matrix(f[layer]) for w, f in zip(weights, style_features))
        for layer in layers
    }
