"""Image parameterizations: what the optimizer changes, and how it becomes a batch of images.

A parameterization is built for ``n`` images of ``size`` px with one seed per image and has
``parameters()`` (the tensors Adam optimizes) and ``__call__() -> [n, channels, size, size]`` in
[0, 1]. It always evaluates in float32, also under bf16 autocast, so the image optimized is the
image saved on every CPU (a bf16 color matmul rounds differently on AMX, AVX-512-bf16 and AVX2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, Sequence

import numpy as np
import torch
from lucent.optvis.param.color import color_correlation_normalized
from lucent.optvis.param.spatial import rfft2d_freqs


class Parameterization(Protocol):
    def parameters(self) -> list[torch.Tensor]: ...

    def __call__(self) -> torch.Tensor: ...


class ParameterizationFactory(Protocol):
    def __call__(self, n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                 decorrelate: bool = True) -> Parameterization: ...


class FourierImage(ABC):
    """What Fourier parameterizations share: one random tensor per image from its own seed on the
    CPU (so an image does not depend on its batch), float32 evaluation, then decorrelated colors
    and a sigmoid. A subclass sets ``self.param`` and defines ``_image()`` (before the colors)."""

    param: torch.Tensor

    def __init__(self, size: int, channels: int, device: torch.device, decorrelate: bool) -> None:
        self.size, self.channels, self.decorrelate, self.device = size, channels, decorrelate, device
        self.color = torch.tensor(color_correlation_normalized.T, device=device)

    def seeded(self, shape: tuple[int, ...], seeds: Sequence[int], draw=torch.randn) -> torch.Tensor:
        """``[len(seeds), *shape]``: each image's draw from its own seed, as the parameter to optimize."""
        return torch.stack([draw(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(
            self.device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.param]

    @abstractmethod
    def _image(self) -> torch.Tensor:
        """The images before colors and sigmoid, ``[n, channels, size, size]``."""

    def __call__(self) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):
            image = self._image()
            if self.decorrelate and self.channels == 3:
                image = (image.permute(0, 2, 3, 1) @ self.color).permute(0, 3, 1, 2)
            return torch.sigmoid(image)


class FFTImage(FourierImage):
    """A batch of images as scaled Fourier spectra, decorrelated colors and a sigmoid (Lucid's
    parameterization, with Lucent's spectrum scaling and color-correlation constants)."""

    def __init__(self, n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                 decorrelate: bool = True, sd: float = 0.01, decay: float = 1.0) -> None:
        super().__init__(size, channels, device, decorrelate)
        freqs = rfft2d_freqs(size, size)
        # Adam moves every coefficient at about the same rate, so this scale is each frequency's
        # learning rate: decay 1 is Lucid's; a larger one favors large structures (a blur prior)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay
        self.scale = torch.tensor(scale, dtype=torch.float32, device=device)[None, None, ..., None]
        self.param = self.seeded((channels,) + freqs.shape + (2,), seeds, lambda shape, generator: torch.randn(
            shape, generator=generator) * sd)

    def _image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.param)
        return torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho")[:, :, :self.size, :self.size] / 4.0


def _maco(*args, **kwargs):
    from .maco import MacoImage

    return MacoImage(*args, **kwargs)


#: the choices of the visualizers' ``parameterization`` parameter
PARAMETERIZATIONS: dict[str, ParameterizationFactory] = {"fft": FFTImage, "maco": _maco}
