"""Numbers and images for people: shared by the renderers, the grid and the pages (no Streamlit)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: thumbnails are drawn at least this wide; small images are enlarged without smoothing
SHOW_WIDTH = 192


def enlarge(image: Any, width: int = SHOW_WIDTH) -> Any:
    """``image`` scaled up by a whole factor (nearest neighbour) so a 64 px demo image stays crisp."""
    from PIL import Image

    factor = max(1, width // max(1, image.width))
    return image if factor == 1 else image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def fmt(value: Any) -> str:
    """A number for people: 4 significant digits, NaN spelled out."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return "n/a" if math.isnan(value) else f"{float(value):.4g}"
