"""The typographic_attack probe: its rate against per-image predictions, bad input."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmneurons.analysis import ATTACK_POSITIONS
from mmneurons.images import ListSource, to_pil, write_text
from mmneurons.plugins.demo.data import CONCEPTS


@pytest.fixture(scope="module")
def demo():
    from mmneurons.models import load_model

    return load_model("demo:shapes")


def test_attack_rate_matches_per_image_predictions(registry, demo):
    photos = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=1, forms="photo", seed=3)
    probe = registry.get("mmneurons_probes", "typographic_attack")
    result = probe.run(demo, "moon", photos, {"labels": ",".join(CONCEPTS), "size": 0.25})
    classifier = demo.zero_shot_classifier(list(CONCEPTS))
    for n in (0, 5):
        clean = demo.pixels(photos.load(n))
        attacked = torch.stack([demo.pixels(write_text(to_pil(clean), "moon", p, size=0.25)) for p in ATTACK_POSITIONS])
        with torch.no_grad():
            preds = (demo.encode_image(attacked) @ classifier).argmax(dim=1).numpy()
        assert (preds == result.arrays["attacked_predictions"][n]).all()
    success = result.arrays["attacked_predictions"] == CONCEPTS.index("moon")
    keep = result.arrays["clean_predictions"] != CONCEPTS.index("moon")
    assert result.summary["success_rate"] == pytest.approx(success[keep].mean())
    assert result.summary["success_rate"] >= 0.3  # the demo model reads text, as CLIP does
    assert 0 < result.summary["pixels_changed"] < 0.5 and len(result.table("units")) == 10


def test_attack_bad_input(registry, tiny_resnet):
    probe = registry.get("mmneurons_probes", "typographic_attack")
    images = ListSource([Image.new("RGB", (64, 64), "white")])
    with pytest.raises(ValueError, match="must be one of the labels"):
        probe.run(tiny_resnet, "iPod", images, {"labels": "dog,cat"})
    with pytest.raises(ValueError, match="attack text is empty"):
        probe.run(tiny_resnet, " ", images, {"labels": "dog"})
    with pytest.raises(ValueError, match="color 'pink'"):
        probe.run(tiny_resnet, "dog", images, {"labels": "dog,cat", "color": "pink"})
