"""The neuron_label probe: labels of the demo's multimodal units against the manifest's truth,
with their confidence, runners-up, further labels and evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmneurons.plugins.demo.data import CONCEPTS
from mmneurons.plugins.demo.plugin import ASSETS


@pytest.fixture(scope="module")
def demo():
    from mmneurons.models import load_model

    return load_model("demo:shapes")


def test_neuron_labels_name_the_demo_units_concepts(registry, demo):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=8, seed=5)
    result = registry.get("mmneurons_probes", "neuron_label").run(demo, "layer4.0", source,
                                                                  {"concepts": ",".join(CONCEPTS)})
    labels = {row["unit"]: row["label"] for row in result.table("labels")}
    units = json.loads((ASSETS / "manifest.json").read_text())["evaluation"]["multimodal"]["units"]
    hits = sum(labels[f"layer4.0:{c}"] == concept for c, concept in units)
    assert hits >= 28, hits  # measured 29 of 31; chance is about 31/12
    assert _auc(result, units) >= 0.75  # measured 0.83
    with pytest.raises(ValueError, match="concept list is empty"):
        registry.get("mmneurons_probes", "neuron_label").run(demo, "layer4.0", source, {"concepts": " , "})


def _auc(result, units) -> float:
    """How well the confidence ranks the multimodal units' correct labels above their wrong ones."""
    rows = {row["unit"]: row for row in result.table("labels")}
    right = [rows[f"layer4.0:{c}"]["confidence"] for c, concept in units if rows[f"layer4.0:{c}"]["label"] == concept]
    wrong = [rows[f"layer4.0:{c}"]["confidence"] for c, concept in units if rows[f"layer4.0:{c}"]["label"] != concept]
    assert right and wrong
    return float(np.mean([(r > w) + 0.5 * (r == w) for r in right for w in wrong]))


def test_neuron_label_has_a_default_vocabulary_and_a_confidence_that_ranks_units(registry, demo):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=8, seed=5)
    result = registry.get("mmneurons_probes", "neuron_label").run(demo, "layer4.0", source, {})
    assert result.summary["vocabulary"].startswith("default: ")
    known = set(demo.tokenizer.vocab)  # words the demo's tokenizer cannot read are left out of the default
    rows = result.table("labels")
    assert len(rows) == 512 and {row["label"] for row in rows} <= known and set(CONCEPTS) <= known
    units = json.loads((ASSETS / "manifest.json").read_text())["evaluation"]["multimodal"]["units"]
    hits = sum(rows[c]["label"] == concept for c, concept in units)  # rows are in channel order
    assert hits >= 26, hits  # measured 27 of 31 here (28 on the probe set: docs/benchmarks.md)
    assert _auc(result, units) >= 0.9  # measured 0.99
    most = max({row["label"] for row in rows}, key=lambda label: sum(row["label"] == label for row in rows))
    shared = [row["confidence"] for row in rows if row["label"] == most]
    assert len(shared) > 10 and len(set(shared)) == len(shared)  # units with one label still rank
    assert all(0.0 <= row["confidence"] <= 2.0 for row in rows)  # a margin between two correlations
    assert result.arrays["top_concepts"].shape == (512, 5)
    # further labels: a runner-up only, never the label twice
    for row in rows:
        names = row["labels"].split(", ")
        assert names[0] == row["label"] and len(set(names)) == len(names) <= 3
    assert 0 < result.summary["polysemantic"] < 512


def test_soft_wpmi_stays_available_and_is_worse_on_the_demo(registry, demo):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=8, seed=5)
    probe = registry.get("mmneurons_probes", "neuron_label")
    units = json.loads((ASSETS / "manifest.json").read_text())["evaluation"]["multimodal"]["units"]
    hits = {}
    for method in ("correlation", "soft_wpmi"):
        rows = probe.run(demo, "layer4.0", source, {"method": method, "concepts": ",".join(CONCEPTS)}).table("labels")
        hits[method] = sum(rows[c]["label"] == concept for c, concept in units)
    assert hits["soft_wpmi"] >= 12 and hits["correlation"] > hits["soft_wpmi"], hits  # measured 16 and 29


def test_one_unit_label_carries_its_evidence(registry, demo):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=8, seed=5)
    result = registry.get("mmneurons_probes", "neuron_label").run(demo, "layer4.0:489", source, {})
    assert result.summary["label"] == "star"  # the manifest's concept of unit 489
    candidates = result.table("candidates")
    assert [c["rank"] for c in candidates] == [1, 2, 3, 4, 5] and candidates[0]["concept"] == "star"
    assert candidates[0]["score"] - candidates[1]["score"] == pytest.approx(result.summary["confidence"])
    evidence = result.table("evidence")
    assert len(evidence) == len(result.images) == 5
    assert all(row["image"].split("/")[1] == "star" and row["p(star)"] > 0.5 for row in evidence)
    assert all(caption.startswith(row["image"]) for caption, row in zip(result.captions, evidence))
    assert result.table("labels")[0]["evidence"] == [row["image"] for row in evidence]
    assert result.table("labels")[0]["runners_up"][0] == f"{candidates[1]['concept']} ({candidates[1]['score']:.3g})"


def test_neuron_label_warns_about_words_the_tokenizer_cannot_read(registry, demo):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=2, seed=5)
    result = registry.get("mmneurons_probes", "neuron_label").run(demo, "layer4.0:51", source,
                                                                  {"concepts": "star,moon,zebra,xylophone"})
    [warning] = [w for w in result.warnings if "unknown to the model's tokenizer" in w]
    assert warning.startswith("2 concept words") and "zebra, xylophone" in warning
