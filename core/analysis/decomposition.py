"""Concept decomposition (Goh et al. 2021, the emotions): a concept's zero-shot direction written as
a sparse, non-negative combination of a layer's units, its reconstruction quality against the
number of units, and a causal check (raising the top unit on a blank image raises the concept's
logit more than the others').

Two ways to take the concept to the layer:

- ``gradient`` (the paper's, as in neuron search): at a neutral image, the Jacobian ``J`` ``[D, C]``
  of the image embedding with respect to each unit's spatial mean is each unit's direction in the
  embedding space; the concept's text embedding ``t`` is decomposed as ``t ~ J a`` with ``a >= 0``
  sparse. Quality: the cosine between ``J a`` and ``t``.
- ``fit``: over an image source, the concept's logit is regressed on the units' activations
  (standardized) with non-negative sparse weights. Quality: R^2 of the fit.

Both use the same greedy non-negative pursuit (:func:`nonnegative_pursuit`): add the unit most
aligned with what is left, refit all chosen weights with non-negative least squares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from scipy.optimize import nnls

from ..capture import edited_layer, layer_gradient
from ..errors import ImageLoadError
from ..images import skipped_note
from ..kinds import Progress, no_progress
from .prompts import neutral_image

if TYPE_CHECKING:  # pragma: no cover
    from ..activations import LayerMeans
    from ..images import ImageSource
    from ..models import ClipModel

#: how a concept is taken to the layer (module docstring)
DECOMPOSITION_METHODS = ("gradient", "fit")


@dataclass
class Pursuit:
    """A sparse non-negative fit: the chosen ``units`` (largest contribution first), their
    ``weights``, and ``quality[i]`` with the first ``i + 1`` units chosen (in the order chosen)."""

    units: list[int]
    weights: np.ndarray
    quality: list[float]
    chosen: list[int]


def nonnegative_pursuit(basis: np.ndarray, target: np.ndarray, n: int, *, quality: str = "cosine") -> Pursuit:
    """Greedy non-negative pursuit of ``target`` ``[D]`` over the columns of ``basis`` ``[D, C]``:
    up to ``n`` columns, each step the one with the largest positive inner product with the
    residual, then all weights refit by NNLS. ``quality``: ``cosine`` (between fit and target) or
    ``r2`` (1 - residual / total sum of squares; center the inputs first). Stops early when no
    column improves the fit."""
    basis, target = np.asarray(basis, np.float64), np.asarray(target, np.float64)
    if basis.ndim != 2 or target.shape != (basis.shape[0],):
        raise ValueError(f"pursuit: basis {basis.shape} and target {target.shape} do not match")
    norms = np.linalg.norm(basis, axis=0)
    scaled = basis / np.where(norms > 0, norms, np.inf)
    chosen: list[int] = []
    weights = np.zeros(0)
    residual, curve = target.copy(), []
    total = float(target @ target)
    for _ in range(min(n, basis.shape[1])):
        scores = scaled.T @ residual
        scores[chosen] = -np.inf
        best = int(np.argmax(scores))
        if not scores[best] > 1e-12 * np.sqrt(total):
            break
        chosen.append(best)
        weights, _ = nnls(basis[:, chosen], target)
        fit = basis[:, chosen] @ weights
        residual = target - fit
        if quality == "cosine":
            denom = np.linalg.norm(fit) * np.sqrt(total)
            curve.append(float(fit @ target / denom) if denom > 0 else 0.0)
        else:
            curve.append(1.0 - float(residual @ residual) / total if total > 0 else 0.0)
    contribution = weights * norms[chosen] if chosen else weights
    order = np.argsort(-contribution, kind="stable")
    return Pursuit([chosen[i] for i in order], weights[order], curve, list(chosen))


def unit_jacobian(model: "ClipModel", layer: str, neutral: str = "gray", chunk: int = 64) -> np.ndarray:
    """``[D, C]``: d (image embedding) / d (spatial mean of each unit of ``layer``) at a neutral
    image; one backward per embedding dimension, ``chunk`` at a time."""
    with torch.no_grad():
        dim = int(model.forward_visual(neutral_image(model, neutral)).shape[1])
    rows = []
    for start in range(0, dim, chunk):
        count = min(chunk, dim - start)
        pixels = neutral_image(model, neutral).repeat(count, 1, 1, 1)
        picks = torch.arange(start, start + count, device=model.device)
        grad = layer_gradient(model, pixels, layer, lambda emb, p=picks: emb[torch.arange(len(p)), p])
        rows.append(grad.sum(dim=(2, 3)).detach().float().cpu().numpy())
    return np.concatenate(rows)


def concept_embeddings(model: "ClipModel", concepts: Sequence[str],
                       templates: Sequence[str] | None = None) -> np.ndarray:
    """``[D, K]`` unit-norm zero-shot embeddings of ``concepts`` (each one's prompts averaged)."""
    with torch.no_grad():
        return model.zero_shot_classifier(list(concepts), templates).float().cpu().numpy()


def raise_unit_logits(model: "ClipModel", layer: str, channel: int, amount: float, classifier: np.ndarray,
                      neutral: str = "gray") -> np.ndarray:
    """``[K]``: how much each class's logit rises on a neutral image when ``channel`` of ``layer`` is
    raised by ``amount`` at every position (the paper's causal check)."""
    weights = torch.as_tensor(classifier, dtype=torch.float32, device=model.device)
    pixels = neutral_image(model, neutral)

    def edit(view: torch.Tensor) -> torch.Tensor:
        view = view.clone()
        view[:, channel] += amount
        return view

    with torch.inference_mode():
        before = model.zero_shot_logits(pixels, weights)[0]
        with edited_layer(model, layer, edit):
            after = model.zero_shot_logits(pixels, weights)[0]
    return (after - before).float().cpu().numpy()


@dataclass
class Decomposition:
    """A concept over a layer's units: the pursuit's units, weights and quality curve, and the
    causal check (``raised``: each class's logit change when the top unit is raised)."""

    concept: str
    layer: str
    method: str
    pursuit: Pursuit
    quality_name: str
    raised: np.ndarray | None = None
    classes: Sequence[str] = ()
    raise_amount: float = 0.0

    @property
    def causal_rank(self) -> int | None:
        """The concept's place (0 = first) among ``classes`` by how much raising the top unit
        raised each logit; None without a check."""
        if self.raised is None or self.concept not in self.classes:
            return None
        k = list(self.classes).index(self.concept)
        return int((self.raised > self.raised[k]).sum())


def decompose_fit(acts: np.ndarray, logits: np.ndarray, n: int) -> Pursuit:
    """The ``fit`` method: the concept's logit over images ``[N]`` on standardized unit
    activations ``acts`` ``[N, C]`` (weights per standard deviation of each unit)."""
    centered = acts - acts.mean(axis=0)
    scale = centered.std(axis=0)
    standardized = centered / np.where(scale > 0, scale, np.inf)
    return nonnegative_pursuit(standardized, logits - logits.mean(), n, quality="r2")


@dataclass
class DecompositionContext:
    """What every decomposition over one layer and one image source shares: the units' means over
    the images (and the images' embeddings for ``fit``), the classes of the causal check and their
    embeddings, each unit's top category among the images, and the Jacobian for ``gradient``."""

    layer: str
    method: str
    means: "LayerMeans"
    classes: list[str]
    embeddings: np.ndarray
    top_category: list
    jacobian: np.ndarray | None
    neutral: str = "gray"
    warnings: list[str] = field(default_factory=list)

    @property
    def std(self) -> np.ndarray:
        return self.means.acts.std(axis=0)


def decomposition_context(model: "ClipModel", source: "ImageSource", layer: str, *, method: str = "gradient",
                          classes: Sequence[str] = (), neutral: str = "gray", batch_size: int = 64,
                          progress: Progress = no_progress) -> DecompositionContext:
    """One pass over ``source`` (and, for ``gradient``, the Jacobian at the ``neutral`` image).
    ``classes``: those of the causal check; the source's categories are added after them."""
    from ..activations import layer_means

    if method not in DECOMPOSITION_METHODS:
        raise ValueError(f"decomposition method {method!r}: allowed: {', '.join(DECOMPOSITION_METHODS)}")
    records = [source.record(i) for i in range(len(source))]
    means = layer_means(model, source, layer, batch_size=batch_size, progress=progress, embeddings=method == "fit")
    if not len(means.indices):
        raise ImageLoadError(f"concept decomposition: no image of {source.describe()} could be loaded")
    categories = [records[i].category for i in means.indices]
    known = sorted({c for c in categories if c is not None})
    names = list(dict.fromkeys([*classes, *known]))
    if not names:
        raise ValueError("concept decomposition: no classes to compare (give some, or images with categories)")
    top_category: list = [None] * means.acts.shape[1]
    if known:
        per = np.stack([means.acts[[c == k for c in categories]].mean(axis=0) for k in known])
        top_category = [known[i] for i in per.argmax(axis=0)]
    warnings = [skipped_note([(records[i].id, why) for i, why in means.skipped])] if means.skipped else []
    jacobian = unit_jacobian(model, layer, neutral) if method == "gradient" else None
    return DecompositionContext(layer, method, means, names, concept_embeddings(model, names), top_category,
                                jacobian, neutral, warnings)


def decompose_concept(model: "ClipModel", concept: str, context: DecompositionContext, n: int, *,
                      raise_by: float | None = 3.0) -> Decomposition:
    """``concept`` (one of ``context.classes``) over the layer's units, up to ``n`` of them; with
    ``raise_by``, the causal check raising the top unit by that many of its standard deviations
    over the images (None: no check)."""
    if concept not in context.classes:
        raise ValueError(f"concept {concept!r} is not among the context's classes")
    k = context.classes.index(concept)
    vector = context.embeddings[:, k]
    if context.method == "gradient":
        pursuit = nonnegative_pursuit(context.jacobian, vector, n, quality="cosine")
    else:
        logits = float(model.logit_scale.exp()) * context.means.embeddings @ vector
        pursuit = decompose_fit(context.means.acts, logits, n)
    result = Decomposition(concept, context.layer, context.method, pursuit,
                           "cosine" if context.method == "gradient" else "r2", classes=list(context.classes))
    if raise_by is not None and pursuit.units:
        top = pursuit.units[0]
        amount = raise_by * float(context.std[top] or 1.0)
        result.raised = raise_unit_logits(model, context.layer, top, amount, context.embeddings, context.neutral)
        result.raise_amount = amount
    return result
