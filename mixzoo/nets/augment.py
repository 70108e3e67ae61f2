r"""Image transformations for Tissera et al.'s (2022) eq. (7) and consistency step (section 7).

:class:`Augment` draws one random transformation per image, vectorized over the
batch: a random crop/shift with a small scale change and a small rotation (one
affine resampling), then a random brightness and contrast change. :func:`sobel`
is the paper's preprocessing (section 8.2): a grey image becomes two planes, its
vertical and horizontal Sobel edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MixzooInputError

__all__ = ["Augment", "sobel", "as_images"]


def as_images(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """(B, D) or (B, C, H, W) -> (B, C, H, W) for an ``image_shape`` of (H, W) or (C, H, W)."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise MixzooInputError(f"image_shape must be (H, W) or (C, H, W), got {tuple(image_shape)}.")
    if x.dim() == 4:
        return x
    if x.shape[-1] != math.prod(shape):
        raise MixzooInputError(f"images of shape {shape} need {math.prod(shape)} features per row, got {x.shape[-1]}.")
    return x.reshape(x.shape[0], *shape)


def sobel(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 2, H, W): vertical and horizontal Sobel edges of the grey image."""
    grey = images.mean(1, keepdim=True)
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    kernels = torch.stack([gx, gx.t()])[:, None].to(images.dtype)
    return F.conv2d(grey, kernels, padding=1)


class Augment(nn.Module):
    """Random transformation :math:`T` of a batch of images, one draw per image.

    :param image_shape: (H, W) or (C, H, W); inputs may be flat (B, D) rows.
    :param shift: largest translation as a fraction of the image side (crop/shift).
    :param scale: largest relative zoom (a crop of 1 - scale of the side, resized).
    :param rotation: largest rotation in degrees.
    :param shear: largest horizontal shear :math:`s` in :math:`x' = x + s y` (a change of slant).
    :param brightness: largest additive brightness change.
    :param contrast: largest relative contrast change.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        shift: float = 0.1,
        scale: float = 0.1,
        rotation: float = 15.0,
        shear: float = 0.0,
        brightness: float = 0.1,
        contrast: float = 0.2,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        as_images(torch.zeros(1, math.prod(self.image_shape)), self.image_shape)  # validates the shape
        self.shift, self.scale, self.rotation, self.shear = float(shift), float(scale), float(rotation), float(shear)
        self.brightness, self.contrast = float(brightness), float(contrast)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform ``x`` (flat rows or images); the output has the input's shape."""
        img = as_images(x, self.image_shape)
        b = img.shape[0]

        def u(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(b, generator=generator, device="cpu").to(img.device, img.dtype) * (hi - lo) + lo

        angle = u(-self.rotation, self.rotation) * math.pi / 180
        zoom = u(1 - self.scale, 1 + self.scale)
        tx, ty = u(-self.shift, self.shift) * 2, u(-self.shift, self.shift) * 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        if self.shear > 0:  # rotation after a horizontal shear x + s y: the slant of handwriting
            s = u(-self.shear, self.shear)
            row0 = torch.stack([cos, cos * s - sin, tx], -1)
            row1 = torch.stack([sin, sin * s + cos, ty], -1)
        else:  # no draw for the shear, so the random stream is the one it was before shearing existed
            row0, row1 = torch.stack([cos, -sin, tx], -1), torch.stack([sin, cos, ty], -1)
        theta = torch.stack([row0, row1], 1)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        out = F.grid_sample(img, grid, align_corners=False, padding_mode="zeros")
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        c = u(1 - self.contrast, 1 + self.contrast)[:, None, None, None]
        bright = u(-self.brightness, self.brightness)[:, None, None, None]
        out = (out - mean) * c + mean + bright
        return out.reshape(x.shape)
