"""Ablation's arithmetic against hand-computed tables, and the edit it makes."""

import math

import numpy as np
import pytest
import torch

from mmneurons.analysis.ablation import AblationOutcome, ablate_units, replace_channels


def outcome(acc_before, acc_after, logit_before, logit_after) -> AblationOutcome:
    k = len(acc_before)
    empty = np.zeros((0, k))
    return AblationOutcome("l", [0], "zero", [f"c{i}" for i in range(k)], [], np.ones(k), np.array(acc_before),
                           np.array(acc_after), np.array(logit_before), np.array(logit_after), empty, empty, empty,
                           empty)


def test_drops_selectivity_and_most_hurt_by_hand():
    o = outcome([1.0, 0.9, 0.8, 1.0], [0.4, 0.8, 0.8, 1.0], [10, 10, 10, 10], [7, 9.5, 10.5, 10])
    assert np.allclose(o.accuracy_drop, [0.6, 0.1, 0.0, 0.0])
    # own drop 0.6 against the others' mean (0.1 + 0 + 0) / 3
    assert o.selectivity(0) == pytest.approx(0.6 / (0.1 / 3))
    # logit: own 3, others (0.5 - 0.5 + 0) / 3 = 0 -> infinitely selective
    assert o.selectivity(0, "logit") == math.inf
    assert o.selectivity(3) == 0.0  # it did not drop while others did
    assert math.isnan(outcome([1, 1], [1, 1], [5, 5], [5, 5]).selectivity(0))  # nothing dropped
    assert o.most_hurt(2) == [0, 1]


def test_replace_channels_sets_zero_or_given_values():
    view = torch.ones(2, 4, 3, 3)
    zeroed = replace_channels([1, 3])(view)
    assert zeroed[:, [1, 3]].abs().sum() == 0 and torch.equal(zeroed[:, [0, 2]], view[:, [0, 2]])
    assert torch.equal(view, torch.ones(2, 4, 3, 3))  # the input is not changed in place
    filled = replace_channels([2], torch.tensor([5.0]))(torch.ones(2, 4, 7))
    assert torch.all(filled[:, 2] == 5) and torch.all(filled[:, 0] == 1)


def test_removing_every_unit_of_the_last_block_ruins_the_classifier(demo_model, registry):
    images = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=2)
    o = ablate_units(demo_model, images, "layer4.0", range(512))
    assert o.accuracy_before.mean() > 0.8
    assert o.accuracy_after.mean() < 0.2  # the embedding no longer depends on the image
    assert o.groups == ["drawing", "photo", "text"] and o.group_accuracy_before.shape == (3, 12)
    assert o.counts.tolist() == [6] * 12


def test_bad_requests_are_refused(demo_model, registry):
    images = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=1)
    with pytest.raises(ValueError, match="out of range"):
        ablate_units(demo_model, images, "layer4.0", [512])
    with pytest.raises(ValueError, match="mode"):
        ablate_units(demo_model, images, "layer4.0", [1], mode="noise")
    with pytest.raises(ValueError, match="not among the labels"):
        ablate_units(demo_model, images, "layer4.0", [1], labels=["star"])
