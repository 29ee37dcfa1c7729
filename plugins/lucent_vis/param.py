"""Image parameterizations: what the optimizer changes, and how it becomes a batch of images.

A parameterization is built for ``n`` images of ``size`` px with one seed per image and has
``parameters()`` (the tensors Adam optimizes) and ``__call__() -> [n, channels, size, size]`` in
[0, 1]. It always evaluates in float32, also under bf16 autocast, so the image optimized is the
image saved on every CPU (a bf16 color matmul rounds differently on AMX, AVX-512-bf16 and AVX2).
"""

from __future__ import annotations

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


class FFTImage:
    """A batch of images as scaled Fourier spectra, decorrelated colors and a sigmoid (Lucid's
    parameterization, with Lucent's spectrum scaling and color-correlation constants), each image's
    spectrum drawn from its own seed on the CPU, so an image does not depend on its batch."""

    def __init__(self, n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                 decorrelate: bool = True, sd: float = 0.01, decay: float = 1.0) -> None:
        freqs = rfft2d_freqs(size, size)
        self.size, self.channels, self.decorrelate = size, channels, decorrelate
        # Adam moves every coefficient at about the same rate, so this scale is each frequency's
        # learning rate: decay 1 is Lucid's; a larger one favors large structures (a blur prior)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay
        self.scale = torch.tensor(scale, dtype=torch.float32, device=device)[None, None, ..., None]
        spectra = [torch.randn((channels,) + freqs.shape + (2,), generator=torch.Generator().manual_seed(s)) * sd
                   for s in seeds]
        self.spectrum = torch.stack(spectra).to(device).requires_grad_(True)
        self.color = torch.tensor(color_correlation_normalized.T, device=device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        with torch.autocast(self.scale.device.type, enabled=False):
            return self._image()

    def _image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.spectrum)
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho")[:, :, :self.size, :self.size] / 4.0
        if self.decorrelate and self.channels == 3:
            image = (image.permute(0, 2, 3, 1) @ self.color).permute(0, 3, 1, 2)
        return torch.sigmoid(image)


def _maco(*args, **kwargs):
    from .maco import MacoImage

    return MacoImage(*args, **kwargs)


#: the choices of the visualizers' ``parameterization`` parameter
PARAMETERIZATIONS: dict[str, ParameterizationFactory] = {"fft": FFTImage, "maco": _maco}
