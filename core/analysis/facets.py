"""Facets (Goh et al. 2021, faceted feature visualization): a linear probe ``w`` on a lower layer's
activations ``g(x)`` that separates facet images (text, face, indoor, a drawing ...) from generic
ones. The faceted objective for a unit ``f`` is ``f(g(x)) + w^T (g(x) * grad f(g(x)))``: it raises
the unit while steering *what the unit's activation is made of* toward the facet's channels
(the paper found it far better than ``f + w^T g``, which we measured too: docs/paper.md).

A facet is a small JSON file (the probe's weights, its layer, the model it was trained on, its
held-out accuracy and the data it saw): read as data, never run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..errors import ImageLoadError
from ..kinds import Progress, no_progress
from .modality import modality_of

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel

FACET_FORMAT = "mmneurons-facet/1"
#: what a record's label is read from: its category, its form (``modality_of``), or whichever holds the facet
FACET_LABELS = ("auto", "category", "form")


class FacetError(ValueError):
    """A facet file that cannot be used (unreadable, another model, another format)."""


@dataclass
class Facet:
    """A trained facet probe: ``score(g) = coef . (mean_g - mean) / scale + intercept`` over the
    spatial means of ``layer``; positive means "facet"."""

    name: str
    layer: str
    model_id: str
    model_sha256: str | None
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    accuracy: float
    train_accuracy: float
    facet_images: int
    generic_images: int
    source: str
    generic: str = ""
    labels_from: str = "category"
    meta: dict = field(default_factory=dict)

    def score_means(self, means: np.ndarray) -> np.ndarray:
        """The probe's decision value per row of spatial-mean activations ``[N, C]``."""
        return ((np.asarray(means) - self.mean) / self.scale) @ self.coef + self.intercept

    def score(self, model: "ClipModel", pixels: torch.Tensor) -> np.ndarray:
        """The decision value of each image of ``pixels`` ([0, 1], ``[B, 3, S, S]``) on ``model``."""
        from ..capture import capture_layers

        self.check(model)
        with torch.inference_mode():
            acts = capture_layers(model, model.check_pixels(pixels), [self.layer])[self.layer]
        return self.score_means(acts.float().mean(dim=(2, 3)).cpu().numpy())

    def objective_weights(self, negative: bool = False) -> np.ndarray:
        """``w`` of the faceted objective, per channel of ``layer``, scaled to a mean absolute value
        of 1 so that a facet weight of 1 makes the facet term about as large as the unit's own
        activation. The negative weights (evidence for the generic images) are dropped unless
        ``negative``: docs/paper.md measures both."""
        w = self.coef / self.scale
        if not negative:
            w = np.clip(w, 0, None)
        size = float(np.abs(w).mean())
        if size == 0:
            raise FacetError(f"facet '{self.name}' has no positive weight to steer toward")
        return (w / size).astype(np.float32)

    def check(self, model: "ClipModel") -> None:
        """Refuse a model other than the one the facet was trained on (id, and weights hash where known)."""
        from ..provenance import other_model

        other = other_model(model, self.model_id, self.model_sha256)
        if other:
            raise FacetError(f"facet '{self.name}' was trained on {other}; train one for this model with "
                             f"`mmneurons facet train`")
        channels = model.layer_info(self.layer).channels
        if channels != len(self.coef):
            raise FacetError(f"facet '{self.name}': layer '{self.layer}' has {channels} channels, "
                             f"the facet {len(self.coef)}")

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("coef", "mean", "scale"):
            data[key] = [float(v) for v in getattr(self, key)]
        return {"format": FACET_FORMAT, **data}

    def save(self, path: "str | os.PathLike") -> Path:
        """Write the facet as JSON (atomically: a reader never sees half a file). An existing file is
        replaced only when it is a facet file: nothing else is overwritten."""
        from ..own_files import write_own_file

        return write_own_file(path, json.dumps(self.to_dict(), indent=1).encode(), kind="a facet file",
                              example=f"{self.name}.facet.json", is_ours=Facet.load, error=FacetError)

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "Facet":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FacetError(f"facet file {path} does not exist; train one with `mmneurons facet train`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FacetError(f"facet file {path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FACET_FORMAT:
            raise FacetError(f"{path} is not a facet file (format {FACET_FORMAT})")
        try:
            fields = {k: v for k, v in data.items() if k != "format"}
            for key in ("coef", "mean", "scale"):
                fields[key] = np.asarray(fields[key], dtype=np.float64)
            facet = cls(**fields)
        except (TypeError, ValueError) as exc:
            raise FacetError(f"facet file {path} is damaged: {exc}") from None
        if not (len(facet.coef) == len(facet.mean) == len(facet.scale)) or not np.all(facet.scale > 0):
            raise FacetError(f"facet file {path} is damaged: its arrays do not match")
        return facet


def facet_labels(source: "ImageSource", facet: str, generic: Sequence[str] = (),
                 labels_from: str = "auto") -> tuple[np.ndarray, str]:
    """Each image's label: 1 facet, 0 generic, -1 neither (left out); and where labels came from.
    Generic images are those labeled one of ``generic``, or all other images when none is given."""
    if labels_from not in FACET_LABELS:
        raise ValueError(f"labels_from {labels_from!r}: allowed: {', '.join(FACET_LABELS)}")
    records = [source.record(i) for i in range(len(source))]
    by = {"category": [r.category for r in records], "form": [modality_of(r) for r in records]}
    if labels_from == "auto":
        labels_from = "category" if facet in by["category"] else "form" if facet in by["form"] else "category"
    names = by[labels_from]
    if facet not in names:
        seen = sorted({n for n in names if n is not None})
        raise ImageLoadError(f"facet '{facet}': no image of {source.describe()} has that {labels_from}; "
                             f"{labels_from}s: {', '.join(seen[:12]) or 'none'}")
    y = np.array([1 if n == facet else (0 if (n in generic if generic else n is not None) else -1) for n in names])
    if not (y == 0).any():
        raise ImageLoadError(f"facet '{facet}': no generic image to contrast it with"
                             f"{' (' + ', '.join(generic) + ')' if generic else ''}")
    return y, labels_from


def train_facet(model: "ClipModel", source: "ImageSource", facet: str, layer: str, *,
                generic: Sequence[str] = (), labels_from: str = "auto", regularization: float = 0.1,
                holdout: float = 0.25, seed: int = 0, batch_size: int = 64,
                progress: Progress = no_progress) -> Facet:
    """Train the facet probe: L2 logistic regression on the standardized spatial means of
    ``layer`` (``regularization``: the inverse strength C), its accuracy measured on a held-out,
    stratified ``holdout`` share of the images before the final fit on all of them."""
    from sklearn.linear_model import LogisticRegression

    from ..activations import layer_means

    y_all, labels_from = facet_labels(source, facet, generic, labels_from)
    means = layer_means(model, source, layer, batch_size=batch_size, progress=progress)
    keep = y_all[means.indices] >= 0
    x, y = means.acts[keep].astype(np.float64), y_all[means.indices][keep]
    if min((y == 1).sum(), (y == 0).sum()) < 2:
        raise ImageLoadError(f"facet '{facet}': at least 2 facet and 2 generic images are needed, "
                             f"got {(y == 1).sum()} and {(y == 0).sum()}")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        test[idx[: max(1, int(round(len(idx) * holdout)))]] = True

    def fit(rows: np.ndarray):
        mean, scale = x[rows].mean(axis=0), x[rows].std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        clf = LogisticRegression(C=regularization, max_iter=5000).fit((x[rows] - mean) / scale, y[rows])
        return clf, mean, scale

    clf, mean, scale = fit(~test)
    accuracy = float(clf.score((x[test] - mean) / scale, y[test]))
    clf, mean, scale = fit(np.ones(len(y), bool))
    return Facet(name=facet, layer=layer, model_id=model.model_id, model_sha256=model.meta.get("sha256"),
                 coef=clf.coef_[0].astype(np.float64), intercept=float(clf.intercept_[0]), mean=mean, scale=scale,
                 accuracy=accuracy, train_accuracy=float(clf.score((x - mean) / scale, y)),
                 facet_images=int((y == 1).sum()), generic_images=int((y == 0).sum()), source=source.describe(),
                 generic=",".join(generic), labels_from=labels_from,
                 meta={"regularization": regularization, "holdout": holdout, "seed": seed})
