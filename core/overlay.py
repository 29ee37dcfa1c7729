"""Heatmap overlays drawn headless (no display, no pyplot)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# 9 stops of matplotlib's "inferno", enough for a smooth interpolated ramp without importing it
_INFERNO = np.array([
    [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]], dtype=np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` values in [0, 1] -> ``[H, W, 3]`` uint8 colors (inferno ramp)."""
    v = np.clip(np.nan_to_num(values), 0, 1) * (len(_INFERNO) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_INFERNO) - 1)
    t = (v - lo)[..., None]
    return (_INFERNO[lo] * (1 - t) + _INFERNO[hi] * t).astype(np.uint8)


def normalize_heat(heat: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale to [0, 1] by a high percentile, so one extreme pixel does not wash out the map."""
    top = float(np.percentile(heat, percentile)) if heat.size else 0.0
    if top <= 0:
        top = float(heat.max()) if heat.size and heat.max() > 0 else 1.0
    return np.clip(heat / top, 0, 1)


def heatmap_overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """``heat`` (``[h, w]``, any non-negative scale) resized onto ``image`` and blended."""
    colors = Image.fromarray(colorize(normalize_heat(heat))).resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), colors, alpha)
