"""One instance instead of a texture: the render is free only inside a centered soft disk, and
each step shows it over a fresh random flat color outside, so the unit must be driven by what
lies in the middle and by nothing the background could supply (the spirit of Microscope's
center-neuron renders, for layers whose maps are too small to have a center).

The saved image is the disk over mid-gray.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .param import FFTImage, ParameterizationFactory

#: the disk's radius as a fraction of the image side, and the width of its soft edge
RADIUS, EDGE = 0.36, 0.06


def disk(size: int, device: torch.device, radius: float = RADIUS, edge: float = EDGE) -> torch.Tensor:
    """``[1, 1, size, size]``: 1 inside the centered disk, 0 outside, a linear edge between."""
    axis = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size - 0.5
    r = torch.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
    return ((radius + edge / 2 - r) / edge).clamp(0, 1)[None, None]


class WindowedImage:
    """``base`` shown through :func:`disk`; training steps put it over random flat colors."""

    def __init__(self, base, size: int, seeds: Sequence[int], device: torch.device) -> None:
        self.base, self.mask = base, disk(size, device)
        self.gens = [torch.Generator().manual_seed(s + 3) for s in seeds]

    def parameters(self) -> list[torch.Tensor]:
        return self.base.parameters()

    def __call__(self) -> torch.Tensor:
        image = self.base()
        if image.requires_grad and torch.is_grad_enabled():
            outside = torch.stack([torch.rand(3, 1, 1, generator=g) for g in self.gens]).to(image.device)
        else:
            outside = torch.full((len(image), 3, 1, 1), 0.5, device=image.device)
        if image.shape[1] != 3:
            return image
        return image * self.mask + outside * (1 - self.mask)


def windowed(base: ParameterizationFactory = FFTImage) -> ParameterizationFactory:
    """A parameterization factory: ``base``'s images seen through the centered disk."""

    def factory(n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                decorrelate: bool = True) -> WindowedImage:
        return WindowedImage(base(n, size, channels, seeds, device, decorrelate=decorrelate), size, seeds, device)

    return factory
