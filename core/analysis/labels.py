"""Words for units, from images alone (no image labels): the model's own zero-shot probabilities
p(concept | image) over a vocabulary, compared with each unit's activations over the same images.

Two scores per (unit, concept):

- ``correlation`` (the default): Pearson correlation over all images between the unit's activation
  and p(concept | image). It uses every image, so a unit whose top images come from one form (the
  photos, say) is still judged on all of them, and a word that is likely everywhere gains nothing.
- ``soft_wpmi``: CLIP-Dissect's (Oikarinen & Weng, 2023) soft weighted pointwise mutual information
  between the unit's top-k images and the concept, rank weights falling linearly from 1.

A unit's label is its best-scoring concept; its confidence is the margin over the runner-up (how
clearly the evidence picks one word). Further labels (polysemantic units) are the runners-up that
still explain part of the unit's activation once the labels before them are accounted for: each
must raise the R^2 of a least-squares fit of the activation on the labels' probabilities by at
least ``min_gain``, with a positive weight. docs/benchmarks.md measures both scores on the
embedded model, where the truth is known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

LABEL_METHODS = ("correlation", "soft_wpmi")


def concept_probabilities(image_embeddings: np.ndarray | torch.Tensor, word_embeddings: np.ndarray | torch.Tensor,
                          temperature: float = 0.01) -> np.ndarray:
    """``[N, K]`` p(concept | image): the softmax over the concepts of the images' cosine similarity
    with each concept's text embedding, divided by ``temperature``."""
    images = torch.nn.functional.normalize(torch.as_tensor(image_embeddings).float(), dim=-1)
    words = torch.nn.functional.normalize(torch.as_tensor(word_embeddings).float(), dim=-1)
    return torch.softmax(images @ words.T / temperature, dim=1).numpy()


def _standardized(x: np.ndarray) -> np.ndarray:
    """Columns with mean 0 and (population) standard deviation 1; constant columns stay 0."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-12, std, np.inf)


def concept_correlation(acts: np.ndarray, p: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``[C, K]`` Pearson correlation over the images between each unit's activation (``acts``
    ``[N, C]``) and each concept's probability (``p`` ``[N, K]``); 0 for a constant unit or
    concept. ``chunk`` units at a time, in float32, so 20,000 words times thousands of units fit."""
    pz = _standardized(p).astype(np.float32)
    out = np.empty((acts.shape[1], p.shape[1]), dtype=np.float32)
    for start in range(0, acts.shape[1], chunk):
        az = _standardized(acts[:, start:start + chunk]).astype(np.float32)
        out[start:start + chunk] = az.T @ pz / len(acts)
    return out


def _top_images(acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``([C, k]`` indices of each unit's top-k images, ``[k]`` rank weights falling from 1 to 1/k)."""
    k = min(k, acts.shape[0])
    return np.argsort(-acts, axis=0)[:k].T, 1.0 - np.arange(k) / k


def soft_wpmi(acts: np.ndarray, p_concept_given_image: np.ndarray, k: int, lam: float = 1.0,
              chunk: int = 64) -> np.ndarray:
    """``[C, K]`` soft-WPMI of every concept for every unit from ``acts`` ``[N, C]`` and ``[N, K]``:
    log p(concept | D_k) - lam log p(concept), p(concept | D_k) = 1 - prod over the top-k images of
    (1 - weight x p(concept | image)). ``chunk`` units at a time (``[chunk, k, K]`` in memory)."""
    top, weights = _top_images(acts, k)
    eps = 1e-12
    prior = lam * np.log(p_concept_given_image.mean(axis=0) + eps)          # [K]
    out = np.empty((acts.shape[1], p_concept_given_image.shape[1]), dtype=np.float64)
    for start in range(0, len(top), chunk):
        p = p_concept_given_image[top[start:start + chunk]]                  # [c, k, K]
        p_given_top = 1.0 - np.prod(1.0 - weights[None, :, None] * p, axis=1)
        out[start:start + chunk] = np.log(p_given_top + eps) - prior[None, :]
    return out


def extra_labels(activation: np.ndarray, p: np.ndarray, candidates: Sequence[int], *, min_gain: float = 0.1,
                 max_labels: int = 3) -> list[int]:
    """The label (``candidates[0]``) and the runners-up that each add at least ``min_gain`` to the
    R^2 of a least-squares fit of ``activation`` ``[N]`` on the chosen concepts' probabilities
    (``p`` ``[N, K]``, with an intercept), with a positive weight, in ``candidates`` order, at most
    ``max_labels`` in all."""
    y = _standardized(activation[:, None])[:, 0]
    if not y.any():
        return [int(candidates[0])]

    def r2(columns: list[int]) -> tuple[float, np.ndarray]:
        x = np.column_stack([np.ones(len(y))] + [p[:, c] for c in columns])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        residual = y - x @ coef
        return 1.0 - float(residual @ residual) / len(y), coef

    chosen = [int(candidates[0])]
    base, _ = r2(chosen)
    for c in candidates[1:]:
        if len(chosen) >= max_labels:
            break
        fit, coef = r2(chosen + [int(c)])
        if fit - base >= min_gain and coef[-1] > 0:
            chosen.append(int(c))
            base = fit
    return chosen


def label_evidence(activation: np.ndarray, p_label: np.ndarray, n: int = 5) -> list[int]:
    """The ``n`` images that gave a label most: those where both the unit's activation and the
    label's probability are high (largest product of their z-scores, both positive), best first."""
    a, q = _standardized(activation[:, None])[:, 0], _standardized(p_label[:, None])[:, 0]
    weight = np.where((a > 0) & (q > 0), a * q, -np.inf)
    order = [int(i) for i in np.argsort(-weight, kind="stable")[:n] if np.isfinite(weight[i])]
    return order


@dataclass
class UnitLabels:
    """Labels of ``units`` (channel indices) over ``concepts``. Row ``i`` of each array belongs to
    ``units[i]``: ``candidates`` the best concepts (indices into ``concepts``) best first, with their
    ``scores``; ``labels`` the label and any further labels; ``confidence`` the label's score minus
    the runner-up's; ``evidence`` image indices that gave the label."""

    method: str
    concepts: list[str]
    units: list[int]
    candidates: np.ndarray      # [U, top]
    scores: np.ndarray          # [U, top]
    labels: list[list[int]]
    confidence: np.ndarray      # [U]
    evidence: list[list[int]]

    def label(self, row: int) -> str:
        return self.concepts[int(self.candidates[row, 0])]

    def names(self, row: int) -> list[str]:
        return [self.concepts[c] for c in self.labels[row]]


def label_units(acts: np.ndarray, p: np.ndarray, concepts: Sequence[str], *, method: str = "correlation",
                units: Sequence[int] | None = None, k: int = 20, lam: float = 1.0, top: int = 5,
                min_gain: float = 0.1, max_labels: int = 3, evidence: int = 5) -> UnitLabels:
    """Label ``units`` (default: every column of ``acts`` ``[N, C]``) with ``concepts`` from the
    images' concept probabilities ``p`` ``[N, K]`` (:func:`concept_probabilities`)."""
    if method not in LABEL_METHODS:
        raise ValueError(f"label method {method!r}: allowed: {', '.join(LABEL_METHODS)}")
    if p.shape != (acts.shape[0], len(concepts)):
        raise ValueError(f"probabilities {p.shape} do not match {acts.shape[0]} images x {len(concepts)} concepts")
    units = list(range(acts.shape[1])) if units is None else [int(u) for u in units]
    chosen = acts[:, units]
    scores = concept_correlation(chosen, p) if method == "correlation" else soft_wpmi(chosen, p, k, lam)
    top = min(top, len(concepts))
    candidates = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    best = np.take_along_axis(scores, candidates, axis=1)
    confidence = best[:, 0] - best[:, 1] if top > 1 else np.zeros(len(units))
    labels, shown = [], []
    for row in range(len(units)):
        labels.append(extra_labels(chosen[:, row], p, candidates[row], min_gain=min_gain, max_labels=max_labels)
                      if max_labels > 1 else [int(candidates[row, 0])])
        shown.append(label_evidence(chosen[:, row], p[:, candidates[row, 0]], evidence))
    return UnitLabels(method, list(concepts), units, candidates, best.astype(np.float64),
                      labels, confidence.astype(np.float64), shown)
