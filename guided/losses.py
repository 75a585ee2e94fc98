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
