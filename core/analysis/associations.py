"""What a model ties together: the measures of the association audit, written once.

- **Responses**: how strongly each unit responds to a concept, as a z-score over the images (the
  mean on the concept's images minus the mean on all, over the unit's standard deviation), over
  the text tower (the concept's zero-shot neuron-search gradient, z-scored over the units) and
  over rendered words (the unit's activation on the concept's word, z-scored against reference
  words).
- **Shared units** of two concepts: per unit the smaller of its two responses; the pair's shared
  response is the mean of the ``n`` largest (the units that respond strongly to both, not the
  layer-wide average, which weak generic units dominate).
- **Logit share**: how much of concept B's zero-shot logit the units labeled A carry (gradient x
  activation at the layer: their positive contributions as a share of all units' positive ones).
- **Skew** across groups: MaxSkew@k (Geyik et al. 2019; the CLIP audits of Berg et al. 2022) of
  the groups among the top-k images of a ranking against their share of all images, and Cramer's
  V of the groups x assigned-attributes contingency table.

These are associations in the model, measured on the images given: they say what the model ties
together, not why, and not what any person intends; the training data decides them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..capture import layer_attribution
from ..images import ImageRecord, iterate_batches

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel


def cramers_v(table: np.ndarray) -> float:
    """Cramer's V of a contingency table (counts, rows x columns): sqrt(chi^2 / (n (min(r, c) - 1)))
    over the rows and columns that have any count; 0 for a table with one row or one column."""
    table = np.asarray(table, dtype=np.float64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def skews(observed: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """``[G]`` Skew of each group: ln(observed share / desired share); -inf for a group absent from
    ``observed``, nan for a group with no desired share. Both arguments are counts or shares."""
    observed, desired = np.asarray(observed, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    p_obs, p_des = observed / observed.sum(), desired / desired.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_des > 0, np.log(p_obs / p_des), np.nan)


def max_skew(observed: np.ndarray, desired: np.ndarray) -> tuple[float, int]:
    """(MaxSkew, the group it belongs to): the largest :func:`skews` value (the most
    over-represented group)."""
    values = skews(observed, desired)
    g = int(np.nanargmax(values))
    return float(values[g]), g


def top_k_skew(scores: np.ndarray, groups: np.ndarray, n_groups: int, k: int) -> tuple[float, int]:
    """MaxSkew@k: the groups (ints in ``range(n_groups)``) of the ``k`` highest ``scores`` against
    the groups of all scored items."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    observed = np.bincount(groups[order], minlength=n_groups)
    return max_skew(observed, np.bincount(groups, minlength=n_groups))


def group_variance_share(acts: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``[C]`` the share of each unit's variance over the images that lies between the groups (eta^2:
    sum over groups of n_g (group mean - mean)^2 over the sum of squares); 0 for a constant unit."""
    mean = acts.mean(axis=0)
    between = np.zeros(acts.shape[1])
    for g in range(n_groups):
        chosen = groups == g
        if chosen.any():
            between += chosen.sum() * (acts[chosen].mean(axis=0) - mean) ** 2
    total = ((acts - mean) ** 2).sum(axis=0)
    return np.where(total > 1e-12, between / np.where(total > 1e-12, total, 1.0), 0.0)


def image_responses(acts: np.ndarray, categories: Sequence, concepts: Sequence[str]) -> np.ndarray:
    """``[K, C]`` each unit's response to each concept's images: (mean activation over the images
    whose category is the concept - mean over all images) / standard deviation over all images."""
    categories = np.asarray(categories, dtype=object)
    std = acts.std(axis=0)
    scale = np.where(std > 1e-12, std, np.inf)
    out = np.zeros((len(concepts), acts.shape[1]))
    for k, concept in enumerate(concepts):
        chosen = categories == concept
        if not chosen.any():
            raise ValueError(f"no image has the category {concept!r}")
        out[k] = (acts[chosen].mean(axis=0) - acts.mean(axis=0)) / scale
    return out


def z_over_units(values: np.ndarray) -> np.ndarray:
    """``[K, C]`` each row z-scored over the units (text-tower responses: one scale per concept)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=1, keepdims=True)
    return (values - values.mean(axis=1, keepdims=True)) / np.where(std > 1e-12, std, np.inf)


def word_responses(concept_acts: np.ndarray, reference_acts: np.ndarray) -> np.ndarray:
    """``[K, C]`` each unit's activation on each concept's rendered word, z-scored against its
    activations on reference words ``[R, C]``."""
    std = reference_acts.std(axis=0)
    return (concept_acts - reference_acts.mean(axis=0)) / np.where(std > 1e-12, std, np.inf)


def shared_units(response_a: np.ndarray, response_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(units by how strongly they respond to both, best first; the smaller response of each unit,
    in unit order)."""
    both = np.minimum(response_a, response_b)
    return np.argsort(-both, kind="stable"), both


def shared_response(response_a: np.ndarray, response_b: np.ndarray, n: int = 10) -> float:
    """The mean of the ``n`` largest per-unit smaller responses (negative ones count as 0)."""
    _, both = shared_units(response_a, response_b)
    return float(np.sort(np.clip(both, 0.0, None))[::-1][:n].mean())


def logit_share(contributions: np.ndarray, members: np.ndarray) -> float:
    """Share of a logit carried by the units in ``members`` (a mask or indices): the sum of their
    positive contributions over the sum of all units' positive contributions (``contributions``
    ``[C]``), in [0, 1]; nan when no unit adds to the logit. Positive parts only: units that lower
    the logit would otherwise cancel those that raise it and make shares meaningless."""
    positive = np.clip(np.asarray(contributions, dtype=np.float64), 0.0, None)
    total = positive.sum()
    return float(positive[members].sum() / total) if total > 1e-12 else float("nan")


class _Subset:
    """Some images of a source, in their order (picklable for loader workers)."""

    def __init__(self, source: "ImageSource", indices: Sequence[int]) -> None:
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def record(self, i: int) -> ImageRecord:
        return self.source.record(self.indices[i])

    def load(self, i: int):
        return self.source.load(self.indices[i])

    def describe(self) -> str:
        return f"{len(self)} images of {self.source.describe()}"


def logit_contributions(model: "ClipModel", source: "ImageSource", layer: str, prompt: str,
                        indices: Sequence[int] | None = None, *, batch_size: int = 32) -> tuple[np.ndarray, int]:
    """(``[C]`` each unit's mean contribution to ``prompt``'s logit over the images, the number of
    images read): :func:`~mmneurons.capture.layer_attribution` on ``indices`` of ``source`` (all by
    default)."""
    images = source if indices is None else _Subset(source, indices)
    with torch.no_grad():
        text = model.encode_text([prompt])[0]
    total, count = None, 0
    for batch in iterate_batches(images, model.image_size, batch_size=batch_size):
        if not len(batch.indices):
            continue
        part = layer_attribution(model, batch.pixels.to(model.device), layer,
                                 lambda emb: model.logits(emb, text)).float().sum(dim=0).cpu().numpy()
        total = part if total is None else total + part
        count += len(batch.indices)
    if total is None:
        raise ValueError(f"no image could be read for the logit of {prompt!r}")
    return total / count, count
