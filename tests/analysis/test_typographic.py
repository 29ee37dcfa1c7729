"""The typographic attack, written once: text placement, and the attack with one word per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmneurons.analysis import ATTACK_POSITIONS, attacked_pixels, typographic_attack
from mmneurons.images import ListSource, write_text


def test_written_text_stays_inside_and_changes_few_pixels():
    base = Image.new("RGB", (64, 64), (10, 200, 30))
    for position in ATTACK_POSITIONS:
        out = np.asarray(write_text(base, "triangle", position, size=0.2))
        changed = (out != np.asarray(base)).any(axis=2)
        assert 0.02 < changed.mean() < 0.4
        assert not changed[:, 0].all() and not changed[0, :].all()


def test_one_word_per_image_and_predictions_match_a_direct_classification(tiny_resnet):
    images = [Image.new("RGB", (64, 64), color) for color in ("red", "blue", "green")]
    source = ListSource(images)
    labels = ["dog", "cat", "car"]
    out = typographic_attack(tiny_resnet, source, ["cat", "car", "dog"], labels, layer="layer3")
    assert out.words.tolist() == [1, 2, 0] and out.attacked.shape == (3, len(ATTACK_POSITIONS))
    classifier = tiny_resnet.zero_shot_classifier(labels)
    for n, word in enumerate(["cat", "car", "dog"]):
        clean, attacked = attacked_pixels(tiny_resnet, images[n], word)
        with torch.no_grad():
            preds = tiny_resnet.zero_shot_logits(torch.cat([clean[None], attacked]), classifier).argmax(dim=1)
        assert preds[0] == out.clean[n] and (preds[1:].numpy() == out.attacked[n]).all()
    assert np.array_equal(out.success, out.attacked == out.words[:, None])
    assert out.unit_drive.shape == (tiny_resnet.layer_info("layer3").channels,)
    with pytest.raises(ValueError, match="2 words for 3 images"):
        typographic_attack(tiny_resnet, source, ["cat", "dog"], labels)
    with pytest.raises(ValueError, match="'bird'.* must be one of the labels"):
        typographic_attack(tiny_resnet, source, "bird", labels)
