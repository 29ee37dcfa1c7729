"""The activation_by_category probe: the histogram by hand, the probe on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.images import ImageLoadError, ListSource
from mmneurons.plugins.probes.activation_by_category import category_histogram


def test_category_histogram_by_hand():
    values = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 2.0])
    cats = ["a", "a", "b", "b", "a", "b"]
    edges, rows = category_histogram(values, cats, bins=2)
    assert np.allclose(edges, [-2, 0, 2])
    counts = {(r["bin"], r["category"]): r["count"] for r in rows}
    assert counts == {(0, "a"): 2, (1, "a"): 1, (1, "b"): 3}
    std = np.sqrt(np.mean(values ** 2))
    assert sorted({r["x_std"] for r in rows}) == pytest.approx([-1 / std, 1 / std])


def test_activation_by_category_probe(registry, tiny_resnet, random_images, tmp_path):
    probe = registry.get("mmneurons_probes", "activation_by_category")
    source = ListSource(random_images, categories=["x", "y", "z", "w"] * 10)
    result = probe.run(tiny_resnet, "layer3:5", source, {"bins": 4})
    assert sum(r["count"] for r in result.table("bins")) == 40
    assert result.arrays["activations"].shape == (40,)
    [plot] = result.images
    assert plot.width > 300 and np.asarray(plot).std() > 10  # a drawn plot, not a blank canvas
    with pytest.raises(ImageLoadError, match="need categories"):
        probe.run(tiny_resnet, "layer3:5", ListSource(random_images[:3]), {})
