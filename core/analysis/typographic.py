"""The typographic attack (Goh et al. 2021): write a word on an image at fixed positions and see
whether zero-shot classification follows the word. Success = an attacked image classified as the
written word; reported with the fraction of pixels the text changed and, optionally, the units of a
layer the text drives most."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image

from ..activations import layer_hooks, reduce_spatial
from ..errors import ImageLoadError
from ..images import to_pil, write_text
from ..kinds import Progress, no_progress

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel

#: the 8 fixed positions (fractions of the image side): the corners, edge midpoints and no center,
#: as in the paper's automated protocol
ATTACK_POSITIONS = ((0.2, 0.2), (0.5, 0.2), (0.8, 0.2), (0.2, 0.5), (0.8, 0.5), (0.2, 0.8), (0.5, 0.8), (0.8, 0.8))


def attacked_pixels(model: "ClipModel", image: Image.Image, word: str,
                    positions: Sequence[tuple[float, float]] = ATTACK_POSITIONS, *, size: float = 0.2,
                    color: tuple | None = (0, 0, 0),
                    box: tuple | None = (255, 255, 255)) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean ``[3, S, S]``, attacked ``[P, 3, S, S]``) pixels: ``word`` written on the model-sized
    image at each position."""
    clean = model.pixels(image)
    shown = to_pil(clean)
    attacked = [model.pixels(write_text(shown, word, p, size=size, color=color or (0, 0, 0), box=box))
                for p in positions]
    return clean, torch.stack(attacked)


@dataclass
class AttackOutcome:
    """Predictions before and after writing, per image (``N``) and position (``P``)."""

    labels: list[str]
    ids: list[str]
    words: np.ndarray             # [N] label index of the word written on each image
    clean: np.ndarray             # [N] predicted label index of the clean image
    attacked: np.ndarray          # [N, P] predicted label index of each attacked image
    pixels_changed: np.ndarray    # [N, P] fraction of pixels the text changed
    positions: tuple = ATTACK_POSITIONS
    layer: str | None = None
    unit_drive: np.ndarray | None = None  # [C] mean increase of each unit of ``layer`` (attacked - clean)
    skipped: list[str] = field(default_factory=list)
    examples: list[Image.Image] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)

    @property
    def success(self) -> np.ndarray:
        """``[N, P]``: the attacked image is classified as the written word."""
        return self.attacked == self.words[:, None]

    @property
    def already_the_word(self) -> np.ndarray:
        """``[N]``: the clean image is already classified as the word (no attack to measure)."""
        return self.clean == self.words

    def success_rate(self) -> float:
        """Success over the images not already classified as the word (NaN when there are none)."""
        keep = ~self.already_the_word
        return float(self.success[keep].mean()) if keep.any() else float("nan")


def typographic_attack(model: "ClipModel", source: "ImageSource", words: "str | Sequence[str]",
                       labels: Sequence[str], templates: Sequence[str] | None = None, *,
                       positions: Sequence[tuple[float, float]] = ATTACK_POSITIONS, size: float = 0.2,
                       color: tuple | None = (0, 0, 0), box: tuple | None = (255, 255, 255),
                       layer: str | None = None, examples: int = 0,
                       progress: Progress = no_progress) -> AttackOutcome:
    """Attack every image of ``source`` with ``words`` (one word for all, or one per image), each
    written at every position; one forward pass per image gives the predictions and, with
    ``layer``, the units' activations. Images that cannot be loaded are skipped and named."""
    labels = [str(label) for label in labels]
    per_image = [words] * len(source) if isinstance(words, str) else list(words)
    if len(per_image) != len(source):
        raise ValueError(f"typographic attack: {len(per_image)} words for {len(source)} images")
    unknown = sorted({w for w in per_image if w not in labels})
    if unknown:
        raise ValueError(f"typographic attack: the attack word(s) {', '.join(map(repr, unknown))} must be one of "
                         f"the labels ({', '.join(labels) or 'none given'}), so success can be measured")
    classifier = model.zero_shot_classifier(labels, templates)
    ids, word_index, clean_pred, attacked_pred, changed, skipped = [], [], [], [], [], []
    drive, shown, captions = None, [], []
    with torch.inference_mode(), model.lock:
        for i in range(len(source)):
            try:
                image = source.load(i)
            except ImageLoadError as exc:
                skipped.append(str(exc))
                continue
            clean, attacked = attacked_pixels(model, image, per_image[i], positions, size=size, color=color, box=box)
            batch = torch.cat([clean[None], attacked]).to(model.device)
            if layer is None:
                preds = model.zero_shot_logits(batch, classifier).argmax(dim=1).cpu().numpy()
            else:
                with layer_hooks(model, [layer], stop=False) as store:  # one pass: layer and predictions
                    preds = model.zero_shot_logits(batch, classifier).argmax(dim=1).cpu().numpy()
                means = reduce_spatial(store[layer], "mean").float().cpu()
                step = (means[1:] - means[:1]).mean(dim=0).numpy()
                drive = step if drive is None else drive + step
            ids.append(source.record(i).id)
            word_index.append(labels.index(per_image[i]))
            clean_pred.append(int(preds[0]))
            attacked_pred.append(preds[1:])
            changed.append((attacked != clean[None]).any(dim=1).float().mean(dim=(1, 2)).numpy())
            if len(shown) < examples:
                p = i % len(positions)
                shown.append(to_pil(attacked[p]))
                captions.append(f"{ids[-1]}: {labels[preds[0]]} -> {labels[preds[1 + p]]}")
            progress(i + 1, len(source), "typographic attack")
    if not ids:
        raise ImageLoadError(f"typographic attack: no image could be loaded ({len(skipped)} skipped)")
    return AttackOutcome(labels=labels, ids=ids, words=np.array(word_index), clean=np.array(clean_pred),
                         attacked=np.stack(attacked_pred), pixels_changed=np.stack(changed),
                         positions=tuple(positions), layer=layer,
                         unit_drive=drive / len(ids) if drive is not None else None,
                         skipped=skipped, examples=shown, captions=captions)
