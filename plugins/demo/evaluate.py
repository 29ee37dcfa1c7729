"""What the demo model learned, measured on held-out synthetic images.

- zero-shot accuracy per form (photo, drawing, text; text also in fonts never trained on);
- multimodal units: per channel of the last block (spatial mean), the mean activation per
  (concept, form), z-scored across concepts within each form; a unit is multimodal when its top
  concept is the same for photo, drawing and text with z >= 1.5 in each. Compared with a
  permutation null (concept labels shuffled within each form) and with the same architecture at
  random init (batch-norm statistics re-estimated on the same images);
- typographic attack: held-out photos of concept A with another concept's word B written at each
  of the 8 fixed positions (:func:`mmneurons.analysis.typographic_attack`, the probe's protocol);
  the fraction classified as B.
"""

from __future__ import annotations

import numpy as np
import torch

from mmneurons.activations import layer_means
from mmneurons.analysis import concept_modality_table, multimodality, typographic_attack, zero_shot_predictions
from mmneurons.images import iterate_batches
from mmneurons.kinds import Progress, no_progress
from mmneurons.models import ClipModel

from .captions import TEMPLATES
from .data import CONCEPTS, FORMS, ShapesSource, Spec, attack_specs, probe_specs

EVAL_SEED = 20_211_130
LAYER = "layer4.0"
Z_MIN = 1.5


def channel_means(model: ClipModel, source, layer: str = LAYER, batch_size: int = 128) -> np.ndarray:
    """``[N, C]`` spatial-mean activations of every channel of ``layer`` for every image."""
    means = layer_means(model, source, layer, batch_size=batch_size, num_workers=0)
    if means.skipped:
        raise RuntimeError(f"synthetic images failed to render: {means.skipped[:1]}")
    return means.acts


def concept_form_table(acts: np.ndarray, concepts: np.ndarray, forms: np.ndarray) -> np.ndarray:
    """``[F, K, C]`` mean activation per (form, concept, channel), in FORMS and CONCEPTS order."""
    table, _, _ = concept_modality_table(acts, np.array(CONCEPTS)[concepts], np.array(FORMS)[forms],
                                         concept_order=CONCEPTS, modality_order=FORMS)
    return table


def multimodal_mask(table: np.ndarray, z_min: float = Z_MIN) -> tuple[np.ndarray, np.ndarray]:
    """(multimodal bool ``[C]``, top concept ``[C]``) from a ``[F, K, C]`` table (the modality probe's score)."""
    mask, top, _ = multimodality(table, z_min)
    return mask, top


def permutation_null(acts, concepts, forms, n: int, seed: int, z_min: float = Z_MIN) -> list[int]:
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(n):
        shuffled = concepts.copy()
        for f in range(len(FORMS)):
            sel = np.flatnonzero(forms == f)
            shuffled[sel] = rng.permutation(concepts[sel])
        counts.append(int(multimodal_mask(concept_form_table(acts, shuffled, forms), z_min)[0].sum()))
    return counts


def concept_predictions(model: ClipModel, source) -> np.ndarray:
    """Zero-shot predictions among the 12 concepts with the captions' templates."""
    return zero_shot_predictions(model, source, CONCEPTS, TEMPLATES)


def attack_photos(per_concept: int, seed: int, size: int) -> tuple[ShapesSource, list[str]]:
    """Held-out photos of each concept and, per photo, another concept's word to write on it."""
    specs = attack_specs(per_concept, seed)
    return ShapesSource([Spec("photo", s.concept, seed=s.seed) for s in specs], size, eval_fonts=False), \
        [str(s.word) for s in specs]


def reestimate_batchnorm(model: ClipModel, source, batch_size: int = 128) -> None:
    """Replace batch-norm running statistics with those of ``source`` (for the random-init control)."""
    bns = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    with torch.no_grad():
        for batch in iterate_batches(source, model.image_size, batch_size=batch_size, num_workers=0):
            model.forward_visual(batch.pixels)
    for bn in bns:
        bn.eval()


def labels_of(source: ShapesSource) -> tuple[np.ndarray, np.ndarray]:
    concepts = np.array([CONCEPTS.index(s.concept) for s in source.specs])
    forms = np.array([FORMS.index(s.kind) for s in source.specs])
    return concepts, forms


def by_concept(mask: np.ndarray, top: np.ndarray) -> dict[str, int]:
    return {concept: int((top[mask] == k).sum()) for k, concept in enumerate(CONCEPTS) if (top[mask] == k).any()}


def evaluate(model: ClipModel, *, per_cell: int = 40, attack_per_concept: int = 40, seed: int = EVAL_SEED,
             permutations: int = 20, controls: "list[ClipModel] | None" = None,
             progress: Progress = no_progress) -> dict:
    """All metrics as a JSON-able dict (see the module docstring). ``controls`` are the same
    architecture at random init (one per seed)."""
    controls = list(controls or [])
    steps = 4 + len(controls)
    probe = ShapesSource(probe_specs(per_cell, seed), model.image_size, eval_fonts=False)
    concepts, forms = labels_of(probe)
    progress(0, steps, "zero-shot accuracy")
    preds = concept_predictions(model, probe)
    zero_shot = {form: float((preds[forms == f] == concepts[forms == f]).mean()) for f, form in enumerate(FORMS)}
    unseen = ShapesSource(probe_specs(per_cell, seed + 1, forms=("text",)), model.image_size, eval_fonts=True)
    unseen_concepts, _ = labels_of(unseen)
    zero_shot["text_unseen_fonts"] = float((concept_predictions(model, unseen) == unseen_concepts).mean())
    progress(1, steps, "multimodal units")
    acts = channel_means(model, probe)
    mask, top, score = multimodality(concept_form_table(acts, concepts, forms), Z_MIN)
    progress(2, steps, "permutation null")
    null = permutation_null(acts, concepts, forms, permutations, seed)
    result = {
        "layer": LAYER,
        "held_out": {"seed": seed, "per_cell": per_cell, "images": len(probe)},
        "templates": list(TEMPLATES),
        "zero_shot": zero_shot,
        "multimodal": {
            "z_min": Z_MIN, "count": int(mask.sum()), "channels": int(acts.shape[1]),
            "units": [[int(c), CONCEPTS[top[c]]] for c in np.flatnonzero(mask)],
            "ranked": [int(c) for c in np.argsort(-score, kind="stable") if mask[c]],  # most multimodal first
            "by_concept": by_concept(mask, top),
            "null_mean": float(np.mean(null)), "null_max": int(np.max(null)), "permutations": permutations,
        },
    }
    progress(3, steps, "typographic attack")
    photos, words = attack_photos(attack_per_concept, seed + 2, model.image_size)
    attack = typographic_attack(model, photos, words, CONCEPTS, TEMPLATES)
    true = np.array([CONCEPTS.index(s.concept) for s in photos.specs])
    result["typographic_attack"] = {
        "images": len(photos), "positions": len(attack.positions),
        "classified_as_written_word": float(attack.success.mean()),
        "classified_as_true_concept": float((attack.attacked == true[:, None]).mean()),
    }
    if controls:
        counts, concepts_hit = [], {}
        for i, control in enumerate(controls):
            progress(4 + i, steps, "random-init control")
            reestimate_batchnorm(control, probe)
            control_mask, control_top = multimodal_mask(concept_form_table(channel_means(control, probe),
                                                                           concepts, forms))
            counts.append(int(control_mask.sum()))
            for concept, n in by_concept(control_mask, control_top).items():
                concepts_hit[concept] = concepts_hit.get(concept, 0) + n
        result["random_init_control"] = {
            "counts": counts, "mean": float(np.mean(counts)), "by_concept_total": concepts_hit,
            "note": "same architecture at open_clip's random init (one per seed), batch-norm statistics "
                    "re-estimated on the held-out images"}
    progress(steps, steps, "done")
    return result
