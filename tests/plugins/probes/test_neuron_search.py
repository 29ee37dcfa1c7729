"""Zero-shot neuron search against the measured effect of each unit on the logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmneurons.analysis import neutral_image


def _logit_with_shift(model, prompt, layer, channel, eps):
    """The prompt's logit at a gray image when ``channel`` of ``layer`` is raised by ``eps`` everywhere."""
    text = model.encode_text([prompt])[0]

    def shift(_m, _i, out):
        out = out.clone()
        out[:, channel] += eps
        return out

    handle = model.module(layer).register_forward_hook(shift)
    try:
        with torch.no_grad():
            emb = model.forward_visual(neutral_image(model, "gray"))
    finally:
        handle.remove()
    return float(model.logit_scale * F.normalize(emb, dim=-1)[0] @ text)


def test_ranking_matches_the_measured_effect_of_each_unit(registry, tiny_resnet):
    probe = registry.get("mmneurons_probes", "neuron_search")
    result = probe.run(tiny_resnet, "a red star", None, {"layer": "layer3", "top": 256})
    scores = result.arrays["scores"]
    eps = 1e-4  # central differences: the logit is strongly curved (normalizing a short embedding)
    rng = np.random.default_rng(0)
    channels = list(np.argsort(-scores)[:5]) + list(rng.choice(256, 10, replace=False))
    measured = np.array([(_logit_with_shift(tiny_resnet, "a red star", "layer3", c, eps)
                          - _logit_with_shift(tiny_resnet, "a red star", "layer3", c, -eps)) / (2 * eps)
                         for c in channels])
    assert np.allclose(measured, scores[channels], rtol=0.05, atol=0.02 * np.abs(scores).max())
    assert list(np.argsort(-measured)[:3]) == list(range(3)) or np.corrcoef(measured, scores[channels])[0, 1] > 0.99
    assert result.table("units")[0]["unit"] == f"layer3:{int(np.argmax(scores))}"


def test_neuron_search_on_the_demo_finds_units_whose_top_word_is_the_concept(registry):
    """For most concepts, one of the 5 units the search returns for "a <concept>" has that concept as its
    top rendered word (measured: 8 of 12; a random unit would, for 5 units and 16 words, about 27% of the time)."""
    from mmneurons.images import WordSource
    from mmneurons.models import load_model
    from mmneurons.plugins.demo.data import CONCEPTS

    demo = load_model("demo:shapes")
    search = registry.get("mmneurons_probes", "neuron_search")
    words = registry.get("mmneurons_probes", "rendered_words")
    source = WordSource(list(CONCEPTS) + ["house", "tree", "water", "music"], size=64)
    top_word = {}
    layer_words = words.run(demo, "layer4.0", source, {}).table("units")
    for row in layer_words:
        top_word[row["unit"]] = row["best"]
    hits = [c for c in CONCEPTS
            if c in {top_word[row["unit"]] for row in search.run(demo, f"a {c}", None, {"top": 5}).table("units")}]
    assert len(hits) >= 7, hits


def test_bad_prompts_and_layers(registry, tiny_resnet):
    probe = registry.get("mmneurons_probes", "neuron_search")
    with pytest.raises(ValueError, match="prompt is empty"):
        probe.run(tiny_resnet, "  ", None, {})
    with pytest.raises(Exception, match="no layer 'layer9'"):
        probe.run(tiny_resnet, "a star", None, {"layer": "layer9"})
