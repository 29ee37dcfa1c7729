"""Transformation robustness: each step sees the images randomly moved, so the optimum is a
picture of the feature rather than an adversarial pattern. A transform takes the image batch
and one seeded generator per image (so an image's transforms do not depend on its batch)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

#: ``transform(images, generators) -> images``
Transform = Callable[[torch.Tensor, Sequence[torch.Generator]], torch.Tensor]


def affine_transform(scale: tuple[float, float], degrees: float, jitter: float, pad: float = 2.0) -> Transform:
    """One random affine warp per image with gray (0.5) fill: scale in ``scale``, rotation within
    +-``degrees``, translation by up to +-``jitter`` then +-``jitter / 2`` pixels (the paper's jitter 4
    then jitter 2), after padding ``pad`` pixels per side. Pixel amounts are for 224 px and scale with the
    image when it is larger."""

    def transform(x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
        _, _, _, w = x.shape
        px = 2.0 / w  # one pixel in normalized coordinates
        unit = max(1.0, w / 224)
        thetas = []
        for g in gens:
            r = torch.rand(6, generator=g)
            s = scale[0] + (scale[1] - scale[0]) * float(r[0])
            angle = math.radians(-degrees + 2 * degrees * float(r[1]))
            tx = ((float(r[2]) - 0.5) * 2 * jitter + (float(r[3]) - 0.5) * jitter) * unit * px
            ty = ((float(r[4]) - 0.5) * 2 * jitter + (float(r[5]) - 0.5) * jitter) * unit * px
            padded = 1 + 2 * pad * unit / w  # pad on each side, then crop back to size
            cos, sin = math.cos(angle) / s * padded, math.sin(angle) / s * padded
            thetas.append([[cos, -sin, tx], [sin, cos, ty]])
        theta = torch.tensor(thetas, dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5

    return transform


#: the paper's reference transforms: pad 2 / jitter 4 / scale 0.67-1.03 / rotate +-20 / jitter 2
paper_transform = affine_transform(scale=(0.67, 1.03), degrees=20, jitter=2)
#: wider moves against tiling: a pattern that only works at one scale and place cannot survive
#: scale 0.5-1.15, rotation +-30 and a shift of up to 6 px (4 then 2) after padding 4
strong_transform = affine_transform(scale=(0.5, 1.15), degrees=30, jitter=4, pad=4)


def no_transform(x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    return x


#: the choices of the visualizers' ``transforms`` parameter
TRANSFORMS: dict[str, Transform] = {"clip": paper_transform, "strong": strong_transform, "none": no_transform}
