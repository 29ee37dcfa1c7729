"""MACO (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization", NeurIPS 2023): only the Fourier phase is optimized, under a fixed magnitude
spectrum, so a render keeps the energy per frequency of natural images and cannot put its effort
into high-frequency patterns.

The magnitude is a power law, ``1 / f ** decay`` (natural images lie near ``decay`` 1); the paper
uses ImageNet's mean spectrum, which we cannot ship or download, and a set of the user's own images
gives one with :func:`magnitude_of` (``spectrum=`` here).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from lucent.optvis.param.spatial import rfft2d_freqs

from .param import FourierImage

#: twice the spread of each image's pixels before the sigmoid: the magnitude fixes the shape of the
#: spectrum, this its contrast (1.6 kept renders near gray and targets low: docs/benchmarks.md)
PIXEL_SCALE = 5.0


def power_law(size: int, decay: float = 1.0) -> torch.Tensor:
    """``[size, size // 2 + 1]`` magnitudes ``1 / f ** decay`` (the zero frequency set to 0: the
    mean color is not the render's to choose)."""
    freqs = rfft2d_freqs(size, size)
    magnitude = 1.0 / np.maximum(freqs, 1.0 / size) ** decay
    magnitude[0, 0] = 0.0
    return torch.tensor(magnitude, dtype=torch.float32)


def magnitude_of(images: torch.Tensor) -> torch.Tensor:
    """The mean magnitude spectrum ``[3, size, size // 2 + 1]`` of images ``[n, 3, size, size]`` in
    [0, 1], zero frequency removed: MACO's constraint taken from a data set."""
    spectrum = torch.fft.rfft2(images.float() - images.float().mean(dim=(2, 3), keepdim=True), norm="ortho")
    return spectrum.abs().mean(dim=0)


class MacoImage(FourierImage):
    """A batch of images as Fourier phases under a fixed magnitude, then color decorrelation and a
    sigmoid (the same color space and range as :class:`~.param.FFTImage`)."""

    def __init__(self, n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                 decorrelate: bool = True, decay: float = 1.0, spectrum: torch.Tensor | None = None) -> None:
        super().__init__(size, channels, device, decorrelate)
        magnitude = spectrum if spectrum is not None else power_law(size, decay).expand(channels, -1, -1)
        if magnitude.shape != (channels, size, size // 2 + 1):
            raise ValueError(f"MACO: a magnitude of shape {tuple(magnitude.shape)} does not fit "
                             f"{channels} channels of {size} px")
        self.magnitude = magnitude.to(device)[None]
        self.param = self.seeded((channels, size, size // 2 + 1), seeds,
                                 lambda shape, generator: torch.rand(shape, generator=generator) * 2 * np.pi - np.pi)

    @property
    def phase(self) -> torch.Tensor:
        return self.param

    def _image(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.param), self.param)
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        return image / image.flatten(1).std(dim=1).clamp_min(1e-8)[:, None, None, None] * PIXEL_SCALE / 2
