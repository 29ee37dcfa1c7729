"""The literal / symbolic / text test: the score against a hand-made table, the table by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.analysis import concept_modality_table, multimodality
from mmneurons.errors import ImageLoadError


def test_score_on_a_hand_made_table():
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.1, (3, 5, 3))
    table[:, 2, 0] = 4.0                 # unit 0: concept 2 in every modality
    table[:2, 2, 1] = 4.0                # unit 1: concept 2 in two modalities, concept 4 in the third
    table[2, 4, 1] = 4.0
    mask, top, score = multimodality(table)
    assert mask.tolist() == [True, False, False] and top[0] == 2
    z = (4.0 - table[:, :, 0].mean(axis=1)) / table[:, :, 0].std(axis=1)
    assert np.isclose(score[0], z.min()) and score[1] == -np.inf


def test_table_means_per_cell():
    acts = np.arange(12, dtype=float).reshape(6, 2)
    table, concepts, mods = concept_modality_table(acts, ["a", "a", "b", "b", "a", "b"],
                                                   ["photo", "photo", "photo", "photo", "text", "text"])
    assert concepts == ["a", "b"] and mods == ["photo", "text"]
    assert np.allclose(table[0, 0], acts[:2].mean(axis=0)) and np.allclose(table[1, 1], acts[5])


def test_table_in_a_given_order_and_every_cell_needed():
    acts = np.arange(8, dtype=float).reshape(4, 2)
    table, concepts, mods = concept_modality_table(acts, ["b", "a", "b", "a"], ["x", "x", "y", "y"],
                                                   concept_order=["b", "a"], modality_order=["y", "x"])
    assert concepts == ["b", "a"] and mods == ["y", "x"]
    assert np.allclose(table[0, 0], acts[2]) and np.allclose(table[1, 1], acts[1])
    with pytest.raises(ImageLoadError, match="no image for a/y"):
        concept_modality_table(acts[:3], ["b", "a", "b"], ["x", "x", "y"])
