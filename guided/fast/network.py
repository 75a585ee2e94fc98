"""Johnson et al.'s image transformation network (2016), with Ulyanov et al.'s instance normalisation.

    >>> net = TransformerNet("half")
    >>> net(torch.rand(1, 3, 300, 451)).shape   # any size: padded to a multiple of 4 inside, cropped back
    torch.Size([1, 3, 300, 451])

Input and output are float32 NCHW RGB in [0, 1]. Deviations from the paper, each for a reason:
- reflection padding instead of zero padding (Johnson's own code): no dark border artefacts;
- instance norm instead of batch norm (Ulyanov et al. 2016): one style per image, whatever the batch;
- nearest upsampling + convolution instead of fractionally strided convolution (Odena et al. 2016):
  transposed convolutions leave checkerboard artefacts;
- a sigmoid on the output instead of Johnson's scaled tanh: the same shape, mapped straight to [0, 1];
- padding to a multiple of 4 and cropping back inside `forward`, so exported graphs accept any size;
- optionally (`input_noise` > 0) a fixed noise pattern added to the input, as Ulyanov et al.'s texture
  networks feed noise: a convolutional network maps a flat region (a clear sky) to a flat output,
  whatever style it learnt, because every pixel there sees the same input. The pattern is a seeded
  tile, repeated over the image: the same photo always gives the same output, in every export.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from guided.errors import GuidedError
from guided.fast.config import WIDTHS, check_input_noise

#: The network downsamples twice by 2, so sizes are padded to a multiple of this.
MULTIPLE = 4
#: Smallest side accepted: the 1/4-scale feature map must be at least 2 px for reflection padding.
MIN_SIDE = 8
RESIDUAL_BLOCKS = 5
#: Side of the input-noise tile (px) and its seed: the tile repeats every NOISE_TILE pixels.
NOISE_TILE = 256
NOISE_SEED = 0


class ConvLayer(nn.Sequential):
    """Reflection padding, then a convolution (no zero padding at the border)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ConvNormRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(ConvLayer(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU())


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance norm, ReLU between, added to the input (Gross & Wilber's variant, as Johnson)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvNormRelu(channels, channels, 3), ConvLayer(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class UpsampleConvNormRelu(nn.Module):
    """Nearest-neighbour x2 upsampling, then conv + instance norm + ReLU (no checkerboard artefacts)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvNormRelu(cin, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformerNet(nn.Module):
    """The feed-forward stylization network; `width` is "full" or "half" (see `WIDTHS`)."""

    def __init__(self, width: str = "half", input_noise: float = 0.0):
        super().__init__()
        if width not in WIDTHS:
            raise GuidedError(f"`width` must be one of {', '.join(WIDTHS)}, got {width!r}")
        self.width = width
        self.input_noise = check_input_noise(input_noise)
        # Not saved with the weights: rebuilt from its seed, so a network file stays the same tensors
        # with or without noise (and a checkpoint trained without it resumes with it).
        generator = torch.Generator().manual_seed(NOISE_SEED)
        self.register_buffer("noise", torch.randn(1, 3, NOISE_TILE, NOISE_TILE, generator=generator),
                             persistent=False)
        self.multiple = MULTIPLE  # an attribute, not the global: TorchScript cannot read module globals
        c1, c2, c3 = WIDTHS[width]
        self.down = nn.Sequential(ConvNormRelu(3, c1, 9), ConvNormRelu(c1, c2, 3, 2), ConvNormRelu(c2, c3, 3, 2))
        self.res = nn.Sequential(*(ResidualBlock(c3) for _ in range(RESIDUAL_BLOCKS)))
        self.up = nn.Sequential(UpsampleConvNormRelu(c3, c2), UpsampleConvNormRelu(c2, c1))
        self.out = ConvLayer(c1, 3, 9)

    def extra_repr(self) -> str:
        return f"width={self.width!r}, input_noise={self.input_noise:g}"

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1], for any H, W >= MIN_SIDE."""
        return self.decode(self.encode(image), image.shape[-2], image.shape[-1])

    def encode(self, image: Tensor) -> Tensor:
        """The features after the residual blocks: (B, c3, H'/4, W'/4), H' and W' padded to a multiple of 4."""
        h, w = image.shape[-2], image.shape[-1]
        m = self.multiple
        if self.input_noise > 0:
            image = image + self.input_noise * self._noise_like(h, w).to(image.dtype)
        x = F.pad(image, [0, (m - w % m) % m, 0, (m - h % m) % m], mode="reflect")
        return self.res(self.down(x))

    def _noise_like(self, h: int, w: int) -> Tensor:
        """The noise tile repeated to cover (h, w), cropped by a negative pad (see `decode`)."""
        t = self.noise.shape[-1]
        tiled = self.noise.repeat(1, 1, (h + t - 1) // t, (w + t - 1) // t)
        return F.pad(tiled, [0, w - tiled.shape[-1], 0, h - tiled.shape[-2]])

    def decode(self, features: Tensor, h: int, w: int) -> Tensor:
        """`encode`'s features -> the (B, 3, h, w) image in [0, 1] (video blends features in between)."""
        x = self.out(self.up(features))
        # Crop back by a negative constant pad, not a slice: the size is then h, w by construction, which
        # torch.export can prove for a symbolic size (a slice :h needs h <= padded size, a guard it cannot).
        x = F.pad(x, [0, w - x.shape[-1], 0, h - x.shape[-2]])
        return torch.sigmoid(x)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["MIN_SIDE", "MULTIPLE", "WIDTHS", "TransformerNet", "count_parameters"]
