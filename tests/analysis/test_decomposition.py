"""Concept decomposition: the pursuit recovers a known sparse non-negative combination, and the
Jacobian it decomposes over is what raising a unit really does to the embedding."""

import numpy as np
import pytest
import torch

from mmneurons.analysis.decomposition import nonnegative_pursuit, raise_unit_logits, unit_jacobian
from mmneurons.analysis.prompts import neutral_image
from mmneurons.capture import edited_layer


def test_pursuit_recovers_a_sparse_nonnegative_combination():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(40, 120))
    target = 2.0 * basis[:, 7] + 0.5 * basis[:, 30] + 1.0 * basis[:, 99]
    p = nonnegative_pursuit(basis, target, 10)
    assert sorted(p.units) == [7, 30, 99]  # it stops once the fit is exact
    assert dict(zip(p.units, p.weights)) == pytest.approx({7: 2.0, 30: 0.5, 99: 1.0})
    assert p.units[0] == 7  # largest contribution first
    assert p.quality[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-12 for a, b in zip(p.quality, p.quality[1:]))


def test_pursuit_never_uses_negative_weights():
    basis = np.eye(3)
    p = nonnegative_pursuit(basis, np.array([1.0, -2.0, 0.5]), 3, quality="r2")
    assert sorted(p.units) == [0, 2] and np.all(p.weights >= 0)
    # the best non-negative fit leaves the -2 unexplained: R^2 = 1 - 4 / 5.25
    assert p.quality[-1] == pytest.approx(1 - 4 / 5.25)
    with pytest.raises(ValueError, match="do not match"):
        nonnegative_pursuit(basis, np.ones(4), 2)


def test_the_jacobian_is_what_raising_a_unit_does(demo_model):
    jac = unit_jacobian(demo_model, "layer4.0", chunk=16)
    assert jac.shape == (64, 512)
    gray = neutral_image(demo_model)
    eps = 1e-2

    def raise_unit(view):
        view = view.clone()
        view[:, 17] += eps
        return view

    with torch.no_grad():
        base = demo_model.forward_visual(gray)[0]
        with edited_layer(demo_model, "layer4.0", raise_unit):
            raised = demo_model.forward_visual(gray)[0]
    assert ((raised - base) / eps).numpy() == pytest.approx(jac[:, 17], rel=0.05, abs=1e-3)
    # and the causal check reads the same change through the zero-shot logits
    classifier = demo_model.zero_shot_classifier(["star", "moon"]).numpy()
    change = raise_unit_logits(demo_model, "layer4.0", 17, eps, classifier)
    assert change.shape == (2,) and np.abs(change).max() > 0
