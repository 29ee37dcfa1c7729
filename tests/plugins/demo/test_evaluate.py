"""The multimodality score against a hand-made activation table."""

from __future__ import annotations

import numpy as np

from mmneurons.plugins.demo.data import CONCEPTS, FORMS
from mmneurons.plugins.demo.evaluate import concept_form_table, multimodal_mask, permutation_null


def _table(channels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.1, (len(FORMS), len(CONCEPTS), channels))


def test_multimodal_mask_by_hand():
    table = _table(4)
    table[:, 3, 0] = 5.0            # unit 0: "star" in every form -> multimodal
    table[0, 3, 1] = 5.0            # unit 1: "star" only for photos
    table[:, 3, 2] = 5.0            # unit 2: "star" for photo and drawing, "moon" for text
    table[2, 3, 2], table[2, 7, 2] = 0.0, 5.0
    mask, top = multimodal_mask(table)
    assert mask.tolist() == [True, False, False, False]
    assert CONCEPTS[top[0]] == "star"


def test_z_threshold_is_applied():
    table = _table(1)
    table[:, 3, 0] = 0.25  # top in every form but barely above the others
    z = (0.25 - table[:, :, 0].mean(axis=1)) / table[:, :, 0].std(axis=1)
    assert multimodal_mask(table, z_min=float(z.min()) - 1e-6)[0][0]
    assert not multimodal_mask(table, z_min=float(z.min()) + 1e-6)[0][0]


def test_table_and_null_from_per_image_activations():
    rng = np.random.default_rng(1)
    concepts = np.tile(np.repeat(np.arange(len(CONCEPTS)), 5), len(FORMS))
    forms = np.repeat(np.arange(len(FORMS)), len(CONCEPTS) * 5)
    acts = rng.normal(0, 1, (len(concepts), 30))
    acts[concepts == 3, :10] += 6  # ten units that love "star" in every form
    table = concept_form_table(acts, concepts, forms)
    assert np.allclose(table[1, 3], acts[(forms == 1) & (concepts == 3)].mean(axis=0))
    assert multimodal_mask(table)[0][:10].all()
    null = permutation_null(acts, concepts, forms, n=10, seed=0)
    assert max(null) < 10  # shuffled labels destroy the planted units
