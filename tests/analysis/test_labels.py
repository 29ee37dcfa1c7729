"""Labels from images alone: each score against a loop, further labels and evidence on made-up units
whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.analysis.labels import (concept_correlation, concept_probabilities, extra_labels, label_evidence,
                                       label_units, soft_wpmi)


def _soft_wpmi_loop(acts, p, k, lam):
    out = np.zeros((acts.shape[1], p.shape[1]))
    for c in range(acts.shape[1]):
        top = sorted(range(len(acts)), key=lambda i: -acts[i, c])[:k]
        for m in range(p.shape[1]):
            prod = 1.0
            for rank, i in enumerate(top):
                prod *= 1 - (1 - rank / k) * p[i, m]
            out[c, m] = np.log(1 - prod + 1e-12) - lam * np.log(p[:, m].mean() + 1e-12)
    return out


def test_soft_wpmi_against_a_loop():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(30, 4))
    p = rng.dirichlet(np.ones(5), size=30)
    assert np.allclose(soft_wpmi(acts, p, k=6, lam=0.7), _soft_wpmi_loop(acts, p, 6, 0.7))


def test_correlation_against_numpy_in_chunks():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(40, 7))
    acts[:, 3] = 2.0  # a constant unit correlates with nothing
    p = rng.dirichlet(np.ones(5), size=40)
    expected = np.array([[np.corrcoef(acts[:, c], p[:, k])[0, 1] if c != 3 else 0.0 for k in range(5)]
                         for c in range(7)])
    assert np.allclose(concept_correlation(acts, p, chunk=3), expected, atol=1e-5)


def test_concept_probabilities_are_a_softmax_of_cosines():
    images, words = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[3.0, 0.0], [0.0, 1.0]])
    p = concept_probabilities(images, words, temperature=0.5)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 1))  # cosines 1 and 0, over 0.5


def _made_up(n=400, seed=0):
    """Images with one concept each among 4 (p nearly one-hot, as a sure model gives)."""
    rng = np.random.default_rng(seed)
    concept = rng.integers(0, 4, n)
    p = np.full((n, 4), 0.02)
    p[np.arange(n), concept] = 0.94
    return rng, concept, p


def test_a_unit_for_two_concepts_gets_both_labels_and_a_unit_for_one_gets_one():
    rng, concept, p = _made_up()
    both = (concept == 1) * 2.0 + (concept == 3) * 1.5 + rng.normal(0, 0.2, len(p))
    one = (concept == 2) * 2.0 + rng.normal(0, 0.2, len(p))
    assert extra_labels(both, p, [1, 3, 0, 2]) == [1, 3]
    assert extra_labels(one, p, [2, 0, 1, 3]) == [2]
    assert extra_labels(both, p, [1, 3, 0], max_labels=1) == [1]
    # a runner-up that explains nothing new is not a label, however it ranks
    assert extra_labels(one, p, [2, 2, 0], min_gain=0.01) == [2]


def test_a_runner_up_with_a_negative_weight_is_not_a_label():
    rng, concept, p = _made_up(seed=1)
    unit = (concept == 0) * 2.0 - (concept == 1) * 1.0 + rng.normal(0, 0.1, len(p))
    assert extra_labels(unit, p, [0, 1], min_gain=0.0) == [0]


def test_evidence_images_are_high_on_both_the_unit_and_the_label():
    activation = np.array([5.0, 4.0, 3.0, 0.0, -1.0, 6.0])
    p_label = np.array([0.9, 0.1, 0.8, 0.9, 0.9, 0.0])
    assert label_evidence(activation, p_label, n=5) == [0, 2]  # 1 and 5 are high on one only


def test_label_units_names_each_units_concept_with_a_margin():
    rng, concept, p = _made_up(seed=2)
    acts = np.stack([(concept == k) * 1.0 + rng.normal(0, 0.3, len(p)) for k in (3, 0, 2)], axis=1)
    labels = label_units(acts, p, ["a", "b", "c", "d"], top=3, evidence=4)
    assert [labels.label(r) for r in range(3)] == ["d", "a", "c"]
    assert np.allclose(labels.confidence, labels.scores[:, 0] - labels.scores[:, 1])
    assert all(concept[i] == k for row, k in zip(labels.evidence, (3, 0, 2)) for i in row)
    only = label_units(acts, p, ["a", "b", "c", "d"], units=[2], method="soft_wpmi", k=10)
    assert only.units == [2] and only.label(0) == "c"
    with pytest.raises(ValueError, match="label method"):
        label_units(acts, p, ["a", "b", "c", "d"], method="nearest")
    with pytest.raises(ValueError, match="do not match"):
        label_units(acts, p[:, :3], ["a", "b", "c", "d"])
