"""Causal ablation: what a unit (or a set of units) is *for*, shown by removing it during the
forward pass and measuring zero-shot classification over an image source, per class and per image
group (a demo image's form; a folder's second level).

A unit is removed at every position of its channel (a ViT's class token included), set to zero
or to its mean over the source. Accuracy saturates on an easy source (a few units out of hundreds
rarely flip a decision), so the mean logit of the true class is reported next to it: the finer
measure of how much a class leans on the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..capture import edited_layer
from ..images import iterate_batches, skipped_note
from ..kinds import Progress, no_progress
from .modality import modality_of

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel

#: how an ablated unit is replaced
ABLATION_MODES = ("zero", "mean")


@dataclass
class AblationOutcome:
    """Zero-shot accuracy and true-class logit per class, with and without the ablation.

    Arrays are ``[K]`` over ``classes``; the ``group_*`` ones ``[G, K]`` over ``groups`` (empty
    when the source's images have no group); NaN where a (group, class) cell has no image.
    """

    layer: str
    channels: list[int]
    mode: str
    classes: list[str]
    groups: list[str]
    counts: np.ndarray
    accuracy_before: np.ndarray
    accuracy_after: np.ndarray
    logit_before: np.ndarray
    logit_after: np.ndarray
    group_accuracy_before: np.ndarray
    group_accuracy_after: np.ndarray
    group_logit_before: np.ndarray
    group_logit_after: np.ndarray
    skipped: list = field(default_factory=list)

    @property
    def accuracy_drop(self) -> np.ndarray:
        return self.accuracy_before - self.accuracy_after

    @property
    def logit_drop(self) -> np.ndarray:
        return self.logit_before - self.logit_after

    def most_hurt(self, n: int = 5) -> list[int]:
        """Class indices by how much the ablation lowered their true-class logit, most first."""
        return [int(k) for k in np.argsort(-self.logit_drop, kind="stable")[:n]]

    def selectivity(self, k: int, measure: str = "accuracy") -> float:
        """Class ``k``'s drop over the mean drop of the other classes (``measure``: accuracy or
        logit); inf when the others did not drop and ``k`` did, NaN when none dropped."""
        drop = self.accuracy_drop if measure == "accuracy" else self.logit_drop
        other = float(np.delete(drop, k).mean()) if len(drop) > 1 else 0.0
        if other > 0:
            return float(drop[k]) / other
        return float("inf") if drop[k] > 0 else float("nan")


def class_labels(source: "ImageSource", labels: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, list]:
    """(class names, each image's class index, each image's record): the source's categories are
    the classes (sorted) unless ``labels`` are given; every image needs a category among them."""
    records = [source.record(i) for i in range(len(source))]
    categories = [r.category for r in records]
    if any(c is None for c in categories):
        raise ValueError(f"ablation: every image of {source.describe()} needs a category (its class); "
                         f"use a folder with one subfolder per class")
    classes = list(labels) if labels else sorted(set(categories))
    unknown = sorted(set(categories) - set(classes))
    if unknown:
        raise ValueError(f"ablation: categories {', '.join(unknown[:6])} are not among the labels; "
                         f"labels: {', '.join(classes[:12])}")
    return classes, np.array([classes.index(c) for c in categories]), records


def _groups_of(records: list) -> tuple[list[str], np.ndarray | None]:
    groups = [modality_of(r) for r in records]
    if not groups or any(g is None for g in groups):
        return [], None
    names = sorted(set(groups))
    return names, np.array([names.index(g) for g in groups])


def _per_class(values: np.ndarray, y: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    out = np.full(k, np.nan)
    for j in range(k):
        sel = (y == j) if mask is None else (y == j) & mask
        if sel.any():
            out[j] = values[sel].mean()
    return out


def replace_channels(channels: Sequence[int], values: torch.Tensor | None = None):
    """An edit for :func:`~mmneurons.capture.edited_layer` that sets ``channels`` to zero, or to
    ``values`` (one per channel) at every position."""
    index = list(channels)

    def edit(view: torch.Tensor) -> torch.Tensor:
        view = view.clone()
        if values is None:
            view[:, index] = 0
        else:
            shape = (1, len(index)) + (1,) * (view.ndim - 2)
            view[:, index] = values.to(view.device, view.dtype).reshape(shape)
        return view

    return edit


def channel_means(model: "ClipModel", source: "ImageSource", layer: str, channels: Sequence[int], *,
                  batch_size: int = 64, progress: Progress = no_progress) -> torch.Tensor:
    """Each of ``channels``' mean over the source's images and positions (mean ablation)."""
    from ..activations import layer_means

    means = layer_means(model, source, layer, batch_size=batch_size, progress=progress)
    return torch.as_tensor(means.acts[:, list(channels)].mean(axis=0), dtype=torch.float32)


def ablate_units(model: "ClipModel", source: "ImageSource", layer: str, channels: Sequence[int], *,
                 labels: Sequence[str] | None = None, mode: str = "zero", templates: Sequence[str] | None = None,
                 batch_size: int = 64, progress: Progress = no_progress) -> AblationOutcome:
    """Zero-shot accuracy and true-class logit per class (and group) over ``source``, with ``layer``'s
    ``channels`` removed (``mode``: zero or the channel's mean over the source) and without."""
    outcomes = ablation_sweep(model, source, layer, [list(channels)], labels=labels, mode=mode,
                              templates=templates, batch_size=batch_size, progress=progress)
    return outcomes[0]


def ablation_sweep(model: "ClipModel", source: "ImageSource", layer: str, sets: Sequence[Sequence[int]], *,
                   labels: Sequence[str] | None = None, mode: str = "zero", templates: Sequence[str] | None = None,
                   batch_size: int = 64, progress: Progress = no_progress) -> list[AblationOutcome]:
    """:func:`ablate_units` for each set of channels in ``sets``, from one pass over the source (each
    batch is read once and run once without and once per set with the ablation)."""
    if mode not in ABLATION_MODES:
        raise ValueError(f"ablation mode {mode!r}: allowed: {', '.join(ABLATION_MODES)}")
    if not sets or any(len(s) == 0 for s in sets):
        raise ValueError("ablation: no unit to ablate")
    channels_in_layer = model.layer_info(layer).channels
    bad = sorted({c for s in sets for c in s if not 0 <= c < channels_in_layer})
    if bad:
        raise ValueError(f"ablation: channel(s) {', '.join(map(str, bad[:6]))} out of range; layer '{layer}' has "
                         f"{channels_in_layer} channels (0..{channels_in_layer - 1})")
    classes, y, records = class_labels(source, labels)
    group_names, groups = _groups_of(records)
    all_channels = sorted({c for s in sets for c in s})
    fill = None
    if mode == "mean":
        means = channel_means(model, source, layer, all_channels, batch_size=batch_size)
        fill = {c: means[i] for i, c in enumerate(all_channels)}
    classifier = model.zero_shot_classifier(classes, templates)
    n = len(source)
    base = np.zeros((n, len(classes)), np.float32)
    after = np.zeros((len(sets), n, len(classes)), np.float32)
    kept = np.zeros(n, bool)
    skipped: list = []
    done = 0
    with torch.inference_mode():
        for batch in iterate_batches(source, model.image_size, batch_size=batch_size):
            skipped += [(records[i].id, why) for i, why in batch.skipped]
            if not len(batch.indices):
                continue
            idx = np.asarray(batch.indices)
            kept[idx] = True
            base[idx] = model.zero_shot_logits(batch.pixels, classifier).float().cpu().numpy()
            for s, channels in enumerate(sets):
                values = torch.stack([fill[c] for c in channels]) if fill is not None else None
                with edited_layer(model, layer, replace_channels(channels, values)):
                    after[s, idx] = model.zero_shot_logits(batch.pixels, classifier).float().cpu().numpy()
                done += len(idx)
                progress(done, n * len(sets), f"ablation of {layer}")
    if not kept.any():
        raise ValueError(f"ablation: no image of {source.describe()} could be loaded")
    y_k, base_k = y[kept], base[kept]
    k = len(classes)

    def summarize(logits: np.ndarray) -> tuple[np.ndarray, ...]:
        correct = (logits.argmax(axis=1) == y_k).astype(float)
        true_logit = logits[np.arange(len(y_k)), y_k]
        acc, logit = _per_class(correct, y_k, k), _per_class(true_logit, y_k, k)
        if groups is None:
            return acc, logit, np.zeros((0, k)), np.zeros((0, k))
        g_k = groups[kept]
        g_acc = np.stack([_per_class(correct, y_k, k, g_k == g) for g in range(len(group_names))])
        g_logit = np.stack([_per_class(true_logit, y_k, k, g_k == g) for g in range(len(group_names))])
        return acc, logit, g_acc, g_logit

    acc0, logit0, g_acc0, g_logit0 = summarize(base_k)
    counts = np.bincount(y_k, minlength=k)
    outcomes = []
    for s, channels in enumerate(sets):
        acc1, logit1, g_acc1, g_logit1 = summarize(after[s][kept])
        outcomes.append(AblationOutcome(
            layer=layer, channels=list(channels), mode=mode, classes=classes, groups=group_names, counts=counts,
            accuracy_before=acc0, accuracy_after=acc1, logit_before=logit0, logit_after=logit1,
            group_accuracy_before=g_acc0, group_accuracy_after=g_acc1, group_logit_before=g_logit0,
            group_logit_after=g_logit1, skipped=skipped))
    return outcomes


def skipped_message(outcome: AblationOutcome) -> list[str]:
    """The warning naming the images that could not be loaded, if any."""
    return [skipped_note(outcome.skipped)] if outcome.skipped else []
