r"""Convolutional encoder and deconvolutional decoder for flat image rows (Li et al. 2020, Fig. 5a).

Both work on rows of ``C*H*W`` features with any leading batch dimensions (particles,
enumerated clusters), as the Gaussian-mixture VAE's MLPs do:

- :class:`ConvEncoder`: stride-2 3x3 convolutions with ReLU, then dense layers; extra
  features after the image (the one-hot y of :math:`q(z \mid x, y)`, eq. 4b) join the
  flattened feature map before the dense layers.
- :class:`DeconvDecoder`: dense layers up to the encoder's last feature map, then
  stride-2 transposed convolutions back to ``H x W``; ``per_pixel`` output maps per input
  channel (2: the mean and the std head of the Gaussian :math:`p(x \mid z)`, eq. 2c;
  1: the Bernoulli logits), flattened map after map.
- :func:`conv_pool_blocks`: 3x3 same-padding convolutions with ReLU, each followed by 2x2
  max-pooling, flattened (the deep-transfer classifier's convolutional body).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .mlp import mlp

__all__ = ["ConvEncoder", "DeconvDecoder", "conv_pool_blocks", "conv_sizes"]


def conv_sizes(side: int, layers: int) -> list[int]:
    """Sides of the feature maps after each stride-2, padding-1, 3x3 convolution: ``ceil(side / 2)`` each time."""
    sizes = [int(side)]
    for _ in range(layers):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


def conv_pool_blocks(image_shape: Sequence[int], channels: Sequence[int] = (32, 64)) -> tuple[nn.Sequential, int]:
    """Conv(3x3, padding 1)-ReLU-MaxPool(2) blocks on (C, H, W) images, flattened; and the flat size.

    Each block halves the sides (rounding down), so ``H`` and ``W`` must be at least ``2 ** len(channels)``.
    """
    c, h, w = (int(s) for s in image_shape)
    if min(h, w) < 2 ** len(channels):
        raise ValueError(
            f"{len(channels)} max-pooled blocks need images of at least {2 ** len(channels)} pixels a side, got {h}x{w}."
        )
    layers: list[nn.Module] = []
    for out_c in channels:
        layers += [nn.Conv2d(c, int(out_c), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = int(out_c), h // 2, w // 2
    return nn.Sequential(*layers, nn.Flatten()), c * h * w


def _flat_batch(x: torch.Tensor, features: int) -> tuple[torch.Tensor, torch.Size]:
    lead = x.shape[:-1]
    return x.reshape(-1, features), lead


class ConvEncoder(nn.Module):
    """Image rows (plus ``extra`` trailing features) -> ``out`` features.

    :param image_shape: (C, H, W).
    :param out: output features.
    :param channels: channels of the stride-2 convolutions.
    :param hidden: dense hidden sizes after the convolutions.
    :param extra: trailing non-image input features (e.g. a one-hot cluster).
    """

    def __init__(
        self, image_shape: Sequence[int], out: int, channels: Sequence[int] = (32, 64), hidden: Sequence[int] = (256,), extra: int = 0
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.image_shape, self.extra, self.pixels = (c, h, w), int(extra), c * h * w
        layers: list[nn.Module] = []
        for out_c in channels:
            layers += [nn.Conv2d(c, int(out_c), 3, stride=2, padding=1), nn.ReLU()]
            c = int(out_c)
        self.conv = nn.Sequential(*layers, nn.Flatten())
        hs, ws = conv_sizes(h, len(channels))[-1], conv_sizes(w, len(channels))[-1]
        self.dense = mlp([c * hs * ws + self.extra, *hidden, out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat, lead = _flat_batch(x, self.pixels + self.extra)
        feats = self.conv(flat[:, : self.pixels].reshape(-1, *self.image_shape))
        if self.extra:
            feats = torch.cat([feats, flat[:, self.pixels :]], -1)
        out = self.dense(feats)
        return out.reshape(*lead, out.shape[-1])


class DeconvDecoder(nn.Module):
    """Latent codes -> ``per_pixel`` maps per image channel, flattened map after map.

    :param latent: input features (the dimension of z).
    :param image_shape: (C, H, W) of the data.
    :param per_pixel: outputs per pixel and channel.
    :param channels: channels of the encoder's convolutions; the decoder mirrors them.
    :param hidden: dense hidden sizes before the transposed convolutions.
    """

    def __init__(
        self, latent: int, image_shape: Sequence[int], per_pixel: int = 2, channels: Sequence[int] = (32, 64), hidden: Sequence[int] = (256,)
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.latent, self.out_features = int(latent), per_pixel * c * h * w
        hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
        chans = [int(ch) for ch in channels]
        self.start = (chans[-1], hs[-1], ws[-1])
        self.dense = nn.Sequential(mlp([latent, *hidden, math.prod(self.start)]), nn.ReLU())
        layers: list[nn.Module] = []
        outs = [*reversed(chans[:-1]), per_pixel * c]
        in_c = chans[-1]
        for i, out_c in enumerate(outs):
            j = len(chans) - 1 - i  # from side hs[j + 1] back to hs[j]
            pad_h, pad_w = hs[j] - (2 * hs[j + 1] - 1), ws[j] - (2 * ws[j + 1] - 1)
            layers.append(nn.ConvTranspose2d(in_c, out_c, 3, stride=2, padding=1, output_padding=(pad_h, pad_w)))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
            in_c = out_c
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat, lead = _flat_batch(z, self.latent)
        maps = self.deconv(self.dense(flat).reshape(-1, *self.start))
        return maps.reshape(*lead, self.out_features)
