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


def paper_transform(x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """The paper's reference transforms, pad 2 / jitter 4 / scale 0.67-1.03 / rotate +-20 / jitter 2,
    as one affine warp per image with gray (0.5) fill. Pixel amounts are for 224 px and scale with
    the image."""
    b, _, h, w = x.shape
    px = 2.0 / w  # one pixel in normalized coordinates
    unit = max(1.0, w / 224)
    thetas = []
    for g in gens:
        r = torch.rand(6, generator=g)
        scale = 0.67 + 0.36 * float(r[0])
        angle = math.radians(-20 + 40 * float(r[1]))
        tx = ((float(r[2]) - 0.5) * 4 + (float(r[3]) - 0.5) * 2) * unit * px
        ty = ((float(r[4]) - 0.5) * 4 + (float(r[5]) - 0.5) * 2) * unit * px
        pad = 1 + 4 * unit / w  # pad 2 on each side, then crop back to size
        cos, sin = math.cos(angle) / scale * pad, math.sin(angle) / scale * pad
        thetas.append([[cos, -sin, tx], [sin, cos, ty]])
    theta = torch.tensor(thetas, dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def no_transform(x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    return x


#: the choices of the visualizers' ``transforms`` parameter
TRANSFORMS: dict[str, Transform] = {"clip": paper_transform, "none": no_transform}
