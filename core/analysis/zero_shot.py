"""Zero-shot classification as CLIP does it: the image embedding against each label's averaged
prompt embeddings (:meth:`ClipModel.zero_shot_logits`), for a few images or a whole source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..images import iterate_batches
from ..kinds import Progress, no_progress

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel


def zero_shot_probabilities(model: "ClipModel", images: Sequence, labels: Sequence[str],
                            templates: Sequence[str] | None = None) -> np.ndarray:
    """``[len(images), len(labels)]`` class probabilities of PIL images (softmax of the scaled logits)."""
    with torch.inference_mode():
        classifier = model.zero_shot_classifier(labels, templates)
        pixels = torch.stack([model.pixels(image) for image in images])
        return model.zero_shot_logits(pixels, classifier).softmax(dim=1).float().cpu().numpy()


def zero_shot_predictions(model: "ClipModel", source: "ImageSource", labels: Sequence[str],
                          templates: Sequence[str] | None = None, *, batch_size: int = 128,
                          num_workers: int | None = 0, progress: Progress = no_progress) -> np.ndarray:
    """The predicted label index of every image of ``source`` (in order; an image that cannot be
    loaded is an error: the caller's labels would no longer line up)."""
    classifier = model.zero_shot_classifier(list(labels), templates)
    preds = []
    with torch.inference_mode():
        for batch in iterate_batches(source, model.image_size, batch_size=batch_size, num_workers=num_workers):
            if batch.skipped:
                index, why = batch.skipped[0]
                raise ValueError(f"zero-shot: image {index} of {source.describe()} could not be loaded: {why}")
            preds.append(model.zero_shot_logits(batch.pixels, classifier).argmax(dim=1).cpu())
            progress(sum(len(p) for p in preds), len(source), "zero-shot predictions")
    return torch.cat(preds).numpy()
