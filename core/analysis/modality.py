"""The literal / symbolic / text test (Goh et al. 2021): a unit's mean activation per (concept,
modality), z-scored across concepts within each modality; a unit is multimodal when its top
concept is the same in every modality with z >= ``z_min`` in each."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ImageLoadError


def modality_of(record: Any) -> str | None:
    """A record's modality: ``meta['form']`` (generated sets) or the second folder level
    (``concept/modality/image.png``)."""
    if record.meta.get("form"):
        return record.meta["form"]
    parts = record.id.replace("\\", "/").split("/")
    return parts[1] if len(parts) >= 3 else None


def concept_modality_table(acts: np.ndarray, concepts: Sequence[str], modalities: Sequence[str], *,
                           concept_order: Sequence[str] | None = None,
                           modality_order: Sequence[str] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """(``[M, K, C]`` mean activations, concept names, modality names) from per-image activations
    ``acts`` ``[N, C]`` and each image's concept and modality. Names are sorted unless an order is
    given; every (concept, modality) cell must have images."""
    concept_names = list(concept_order) if concept_order is not None else sorted(set(concepts))
    modality_names = list(modality_order) if modality_order is not None else sorted(set(modalities))
    concepts, modalities = np.asarray(concepts), np.asarray(modalities)
    table = np.zeros((len(modality_names), len(concept_names), acts.shape[1]))
    missing = []
    for m, modality in enumerate(modality_names):
        for k, concept in enumerate(concept_names):
            sel = (modalities == modality) & (concepts == concept)
            if not sel.any():
                missing.append(f"{concept}/{modality}")
                continue
            table[m, k] = acts[sel].mean(axis=0)
    if missing:
        raise ImageLoadError(f"modality: no image for {', '.join(missing[:8])}"
                             f"{' ...' if len(missing) > 8 else ''}; every concept needs every modality")
    return table, concept_names, modality_names


def max_z(concepts: int) -> float:
    """The largest z-score one of ``concepts`` values can have (one high, the others equal):
    sqrt(concepts - 1). With 2 concepts it is 1.0, with 3 it is 1.41."""
    return float(np.sqrt(max(concepts - 1, 0)))


def multimodality(table: np.ndarray, z_min: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multimodal ``[C]`` bool, top concept ``[C]``, score ``[C]`` = the smallest z of the top concept
    over modalities where all modalities agree, else -inf) from a ``[M, K, C]`` table."""
    z = concept_z(table)
    top = table.argmax(axis=1)                                    # [M, C]
    agree = (top == top[0]).all(axis=0)
    z_top = np.take_along_axis(z, top[:, None, :], axis=1)[:, 0, :]  # [M, C]
    score = np.where(agree, z_top.min(axis=0), -np.inf)
    return agree & (score >= z_min), top[0], score


def concept_z(table: np.ndarray) -> np.ndarray:
    """``[M, K, C]`` z-scores of each concept's mean activation across concepts, per modality and unit
    (0 where a unit does not vary across concepts)."""
    std = table.std(axis=1, keepdims=True)
    return (table - table.mean(axis=1, keepdims=True)) / np.where(std > 1e-12, std, np.inf)


def units_for_concept(table: np.ndarray, concept: int, n: int) -> list[int]:
    """The ``n`` units most multimodal for one concept: by the concept's z-score in the modality
    where it is lowest (what :func:`multimodality` scores for a unit's own top concept), highest
    first. Defined for every concept, also one that is no unit's top concept."""
    weakest = concept_z(table)[:, concept, :].min(axis=0)
    return [int(c) for c in np.argsort(-weakest, kind="stable")[:n]]


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` that maps no index to itself (``n`` >= 2)."""
    if n < 2:
        raise ValueError("a derangement needs at least 2 items")
    while True:
        order = rng.permutation(n)
        if not (order == np.arange(n)).any():
            return order


def relabeled_null(table: np.ndarray, z_min: float = 1.5, n: int = 100, seed: int = 0) -> list[int]:
    """Multimodal unit counts under relabelings that map no concept to itself: every modality but the
    first gets its concepts renamed by its own random derangement, so each modality keeps its
    selectivity and only the agreement across modalities is broken. ``n`` counts, one per trial."""
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(n):
        shuffled = table.copy()
        for m in range(1, table.shape[0]):
            shuffled[m] = table[m][derangement(table.shape[1], rng)]
        counts.append(int(multimodality(shuffled, z_min)[0].sum()))
    return counts

