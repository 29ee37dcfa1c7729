"""Probe figures drawn headless with matplotlib's object API (no pyplot, no global state)."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image


def _render(fig) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float]], title: str, ylabel: str) -> Image.Image:
    """One group of bars per entry of ``groups``, one bar per series (e.g. concepts x modalities)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6, 0.6 * len(groups)), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _render(fig)


def stacked_histogram(centers: Sequence[float], counts: dict[str, Sequence[float]], title: str,
                      xlabel: str) -> Image.Image:
    """Bars at ``centers`` stacked by category (the paper's conditional probability plot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    bottom = np.zeros(len(centers))
    width = (centers[1] - centers[0]) * 0.9 if len(centers) > 1 else 0.5
    from matplotlib import colormaps

    palette = colormaps["tab20"]  # distinct colors for up to 20 categories (the default cycle has 10)
    for i, (name, values) in enumerate(counts.items()):
        ax.bar(centers, values, width, bottom=bottom, label=name, color=palette(i % 20))
        bottom += np.asarray(values, dtype=float)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of images")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _render(fig)
