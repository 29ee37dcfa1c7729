"""The synthetic concept generator: deterministic, every concept and form, attack text inside."""

from __future__ import annotations

import numpy as np

from mmneurons.plugins.demo.data import (CONCEPTS, FORMS, KINDS, ShapesSource, Spec, attack_specs, probe_specs,
                                         render, shape_paths, training_specs)


def test_same_seed_same_image_other_seed_other_image():
    a = np.asarray(render(Spec("photo", "star", seed=3)))
    assert np.array_equal(a, np.asarray(render(Spec("photo", "star", seed=3))))
    assert not np.array_equal(a, np.asarray(render(Spec("photo", "star", seed=4))))
    assert a.shape == (64, 64, 3)


def test_every_concept_and_form_renders_something_visible():
    for kind in FORMS:
        for concept in CONCEPTS:
            img = np.asarray(render(Spec(kind, concept, seed=11)), dtype=float)
            assert img.std() > 8, (kind, concept)  # not a flat background


def test_shapes_differ_from_each_other():
    """Masks of different concepts at the same placement are not the same shape (square vs diamond too)."""
    from mmneurons.plugins.demo.data import _mask, _place

    masks = {}
    for concept in CONCEPTS:
        rng = np.random.default_rng(0)
        placed, radius = _place(rng, 128, shape_paths(concept), center=np.array([64.0, 64.0]))
        masks[concept] = np.asarray(_mask(128, placed, radius * 0.3)) > 127
    for i, a in enumerate(CONCEPTS):
        for b in CONCEPTS[i + 1:]:
            overlap = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert overlap < 0.85, (a, b, overlap)


def test_training_mixture_and_probe_sets():
    specs = training_specs(4000, 0)
    counts = {k: sum(s.kind == k for s in specs) / len(specs) for k in KINDS}
    assert abs(counts["photo"] - 0.29) < 0.03 and abs(counts["sign"] - 0.15) < 0.03
    assert all(s.word != s.concept for s in specs if s.kind == "sign")
    assert training_specs(50, 0) == training_specs(50, 0)
    probe = probe_specs(2, 1)
    assert len(probe) == 2 * len(CONCEPTS) * len(FORMS)
    attack = attack_specs(8, 1)
    assert {s.position for s in attack} == set(range(8)) and all(s.word != s.concept for s in attack)


def test_source_records_carry_concept_and_form():
    source = ShapesSource(probe_specs(1, 0) + attack_specs(1, 0))
    first = source.record(0)
    assert first.category == "circle" and first.meta == {"form": "photo"}
    last = source.record(len(source) - 1)
    assert last.meta["form"] == "attack" and last.meta["word"] != last.category
    assert source.load(0).size == (64, 64)
