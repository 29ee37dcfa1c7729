"""The association audit's measures against tables worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats.contingency import association

from mmneurons.analysis.associations import (cramers_v, group_variance_share, image_responses, logit_share,
                                             max_skew, shared_response, shared_units, skews, top_k_skew,
                                             word_responses, z_over_units)


def test_cramers_v_by_hand():
    # n 100, rows 30/70, columns 40/60: expected [[12, 18], [28, 42]], chi^2 = 4/12 + 4/18 + 4/28 + 4/42
    chi2 = 4 / 12 + 4 / 18 + 4 / 28 + 4 / 42
    assert cramers_v(np.array([[10, 20], [30, 40]])) == pytest.approx(math.sqrt(chi2 / 100))
    # three groups, two attributes: expected 5 everywhere, chi^2 = 4 x 25/5 = 20, V = sqrt(20 / 30)
    assert cramers_v(np.array([[10, 0], [0, 10], [5, 5]])) == pytest.approx(math.sqrt(20 / 30))
    assert cramers_v(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)      # each group its own attribute
    assert cramers_v(np.array([[1, 2], [2, 4]])) == pytest.approx(0.0)      # independent
    assert cramers_v(np.array([[3, 0], [4, 0]])) == 0.0                     # one attribute used: no association
    rng = np.random.default_rng(0)
    table = rng.integers(1, 30, (4, 3))
    assert cramers_v(table) == pytest.approx(association(table, method="cramer"))


def test_skew_and_max_skew_by_hand():
    values = skews(np.array([6, 2, 2]), np.array([1, 1, 1]))
    assert values == pytest.approx([math.log(0.6 / (1 / 3)), math.log(0.2 / (1 / 3)), math.log(0.2 / (1 / 3))])
    assert max_skew(np.array([6, 2, 2]), np.array([1, 1, 1])) == (pytest.approx(math.log(1.8)), 0)
    assert skews(np.array([4, 0]), np.array([1, 1]))[1] == -math.inf            # a group absent from the top
    assert max_skew(np.array([1, 1]), np.array([1, 3])) == (pytest.approx(math.log(0.5 / 0.25)), 0)


def test_max_skew_at_k_by_hand():
    scores = np.array([9, 8, 7, 1, 2, 3])
    groups = np.array([0, 0, 1, 1, 1, 1])
    # top 3: groups 0, 0, 1 -> shares 2/3, 1/3 against 2/6, 4/6
    assert top_k_skew(scores, groups, 2, k=3) == (pytest.approx(math.log(2.0)), 0)
    assert top_k_skew(-scores, groups, 2, k=2) == (pytest.approx(math.log(1 / (4 / 6))), 1)


def test_image_responses_and_group_variance_by_hand():
    acts = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0], [7.0, 2.0]])
    responses = image_responses(acts, ["a", "a", "b", "b"], ["a", "b"])
    # mean 4, standard deviation sqrt(5); the constant unit responds to nothing
    assert responses[:, 0] == pytest.approx([-2 / math.sqrt(5), 2 / math.sqrt(5)])
    assert responses[:, 1] == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="no image has the category 'c'"):
        image_responses(acts, ["a", "a", "b", "b"], ["c"])
    # between groups 2 (2-4)^2 + 2 (6-4)^2 = 16 of the 9 + 1 + 1 + 9 = 20 in all
    assert group_variance_share(acts, np.array([0, 0, 1, 1]), 2) == pytest.approx([0.8, 0.0])


def test_shared_units_by_hand():
    a, b = np.array([3.0, 1.0, 0.0, -1.0]), np.array([1.0, 2.0, 0.0, 5.0])
    order, both = shared_units(a, b)
    assert both.tolist() == [1.0, 1.0, 0.0, -1.0] and order.tolist() == [0, 1, 2, 3]
    assert shared_response(a, b, n=2) == pytest.approx(1.0)
    assert shared_response(a, b, n=4) == pytest.approx(0.5)      # the negative one counts as 0


def test_logit_share_counts_what_raises_the_logit():
    contributions = np.array([2.0, -1.0, 1.0, 1.0])
    assert logit_share(contributions, np.array([True, False, False, True])) == pytest.approx(0.75)
    assert logit_share(contributions, [1]) == 0.0
    assert math.isnan(logit_share(np.array([-1.0, -2.0]), [0]))


def test_text_and_word_responses_are_z_scores():
    assert z_over_units(np.array([[1.0, 2.0, 3.0]]))[0] == pytest.approx([-math.sqrt(1.5), 0, math.sqrt(1.5)])
    reference = np.array([[0.0, 1.0], [2.0, 1.0]])
    assert word_responses(np.array([[3.0, 5.0]]), reference)[0] == pytest.approx([2.0, 0.0])
