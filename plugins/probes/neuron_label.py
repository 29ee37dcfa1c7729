"""``neuron_label``: a description per unit the CLIP-Dissect way (Oikarinen & Weng, 2023).

Concept words are embedded with the model's own text encoder and the probing images with its image
encoder; p(concept | image) is the softmax of their similarities over the concepts (temperature
``temperature``). For each unit, its top-k images D_k get rank weights falling linearly from 1 to
``1 - (k-1)/k``; soft-WPMI(concept) = log p(concept | D_k) - lambda log p(concept), with
p(concept | D_k) = 1 - prod over D_k of (1 - weight x p(concept | image)) and p(concept) the mean over
all images. The label is the concept with the highest soft-WPMI."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmneurons.activations import layer_means
from mmneurons.images import ImageLoadError
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param, resolve_params
from mmneurons.results import ProbeResult
from mmneurons.units import Unit


def soft_wpmi(acts: np.ndarray, p_concept_given_image: np.ndarray, k: int, lam: float = 1.0) -> np.ndarray:
    """``[C, K]`` soft-WPMI of every concept for every unit from ``acts`` ``[N, C]`` and ``[N, K]``."""
    n = acts.shape[0]
    k = min(k, n)
    top = np.argsort(-acts, axis=0)[:k].T                      # [C, k]
    weights = 1.0 - np.arange(k) / k                            # rank weights, 1 ... 1/k
    p = p_concept_given_image[top]                              # [C, k, K]
    p_given_top = 1.0 - np.prod(1.0 - weights[None, :, None] * p, axis=1)
    p_concept = p_concept_given_image.mean(axis=0)              # [K]
    eps = 1e-12
    return np.log(p_given_top + eps) - lam * np.log(p_concept + eps)[None, :]


class NeuronLabelProbe(Probe):
    name = "neuron_label"
    description = "Label units with concept words by soft-WPMI between their top images and the words (CLIP-Dissect)."
    targets = ("unit", "layer")
    params = (Param("concepts", "str", help="comma-separated concept words, or @FILE with one per line"),
              Param("template", "str", "{}", help="prompt template for the concept words"),
              Param("k", "int", 20, min=1, help="top images per unit"),
              Param("lam", "float", 1.0, min=0.0, help="weight of the concept prior (lambda)"),
              Param("temperature", "float", 0.01, min=1e-4, help="softmax temperature on cosine similarities"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def run(self, model: ClipModel, target: Any, source: Any, params: dict | None = None,
            progress: Progress = no_progress) -> ProbeResult:
        values = resolve_params(self.params, params or {}, owner=f"probe '{self.name}'")
        concepts = self.concepts(values["concepts"])
        text = str(target)
        unit = Unit.parse(text).validate(model) if ":" in text else None
        layer = unit.layer if unit else text
        model.layer_info(layer)
        if "{}" not in values["template"]:
            raise ValueError("neuron_label: the template must contain '{}'")
        with torch.no_grad():
            words = model.encode_text([values["template"].format(c) for c in concepts])
        # one full pass per batch gives both the layer (read by a hook) and the image embeddings
        means = layer_means(model, source, layer, batch_size=values["batch_size"], embeddings=True,
                            progress=progress)
        acts_np, skipped = means.acts, len(means.skipped)
        sims = torch.from_numpy(means.embeddings) @ words.float().cpu().T
        p = torch.softmax(sims / values["temperature"], dim=1).numpy()
        scores = soft_wpmi(acts_np, p, values["k"], values["lam"])   # [C, K]
        best = scores.argmax(axis=1)
        warnings = []
        if values["k"] > acts_np.shape[0]:
            warnings.append(f"k={values['k']} is more than the {acts_np.shape[0]} images")
        channels = [unit.channel] if unit else range(acts_np.shape[1])
        rows = [{"unit": f"{layer}:{c}", "label": concepts[best[c]], "score": float(scores[c, best[c]]),
                 "runner_up": concepts[np.argsort(-scores[c])[1]] if len(concepts) > 1 else ""} for c in channels]
        summary = {"layer": layer, "images": acts_np.shape[0], "concepts": len(concepts), "skipped": skipped}
        if unit:
            summary.update({"unit": str(unit), "label": rows[0]["label"], "score": rows[0]["score"]})
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, tables={"labels": rows},
                           arrays={"scores": scores[list(channels)]}, summary=summary, params=values,
                           warnings=warnings)

    @staticmethod
    def concepts(spec: str) -> list[str]:
        from pathlib import Path

        if spec.startswith("@"):
            path = Path(spec[1:])
            if not path.is_file():
                raise ImageLoadError(f"neuron_label: concept file {path} does not exist")
            items = path.read_text(encoding="utf-8").splitlines()
        else:
            items = spec.split(",")
        words = list(dict.fromkeys(w.strip() for w in items if w.strip()))
        if not words:
            raise ValueError("neuron_label: the concept list is empty")
        return words
