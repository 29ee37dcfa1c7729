"""``neuron_label``: a description per unit the CLIP-Dissect way (Oikarinen & Weng, 2023).

Concept words are embedded with the model's own text encoder and the probing images with its image
encoder; p(concept | image) is the softmax of their similarities over the concepts (temperature
``temperature``). For each unit, its top-k images D_k get rank weights falling linearly from 1 to
``1 - (k-1)/k``; soft-WPMI(concept) = log p(concept | D_k) - lambda log p(concept), with
p(concept | D_k) = 1 - prod over D_k of (1 - weight x p(concept | image)) and p(concept) the mean over
all images. The label is the concept with the highest soft-WPMI; its confidence is the rank-weighted
mean of p(label | image) over the top images. Without a concept list the vocabulary is the 20,000
most frequent English words (wordfreq's bundled data), as CLIP-Dissect's 20,000 common words."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from mmneurons.access import check_readable
from mmneurons.activations import layer_means, layers_means
from mmneurons.images import ImageLoadError, skipped_note
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import unit_and_layer

from .rendered_words import default_words

#: labels per unit kept in the result's arrays (the label and its runners-up)
TOP_LABELS = 5


def _top_images(acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``([C, k]`` indices of each unit's top-k images, ``[k]`` rank weights falling from 1 to 1/k)."""
    k = min(k, acts.shape[0])
    return np.argsort(-acts, axis=0)[:k].T, 1.0 - np.arange(k) / k


def soft_wpmi(acts: np.ndarray, p_concept_given_image: np.ndarray, k: int, lam: float = 1.0,
              chunk: int = 64) -> np.ndarray:
    """``[C, K]`` soft-WPMI of every concept for every unit from ``acts`` ``[N, C]`` and ``[N, K]``,
    ``chunk`` units at a time (``[chunk, k, K]`` in memory, not ``[C, k, K]``: 20,000 words fit)."""
    top, weights = _top_images(acts, k)
    eps = 1e-12
    prior = lam * np.log(p_concept_given_image.mean(axis=0) + eps)          # [K]
    out = np.empty((acts.shape[1], p_concept_given_image.shape[1]), dtype=np.float64)
    for start in range(0, len(top), chunk):
        p = p_concept_given_image[top[start:start + chunk]]                  # [c, k, K]
        p_given_top = 1.0 - np.prod(1.0 - weights[None, :, None] * p, axis=1)
        out[start:start + chunk] = np.log(p_given_top + eps) - prior[None, :]
    return out


def label_confidence(acts: np.ndarray, p_concept_given_image: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``[C]`` how consistently each unit's top-k images show its label: the rank-weighted mean of
    p(label | image) over them, in [0, 1]. Unlike soft-WPMI, which saturates at the prior once the
    top image is sure, it ranks units that share a label."""
    top, weights = _top_images(acts, k)
    p = p_concept_given_image[top, labels[:, None]]                          # [C, k]
    return (p * weights).sum(axis=1) / weights.sum()


class NeuronLabelProbe(Probe):
    name = "neuron_label"
    description = "Label units with concept words by soft-WPMI between their top images and the words (CLIP-Dissect)."
    targets = ("unit", "layer")
    atlas: dict = {}  # an atlas stage with the default parameters
    params = (Param("concepts", "str", "",
                    help="comma-separated concept words, @FILE with one per line, or empty: the n_words most "
                         "frequent English words"),
              Param("n_words", "int", 20_000, min=2, max=100_000,
                    help="size of the default vocabulary (wordfreq; CLIP-Dissect used 20,000 common words)"),
              Param("template", "str", "{}", help="prompt template for the concept words"),
              Param("k", "int", 20, min=1, help="top images per unit"),
              Param("lam", "float", 1.0, min=0.0, help="weight of the concept prior (lambda)"),
              Param("temperature", "float", 0.01, min=1e-4, help="softmax temperature on cosine similarities"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        unit, layer = unit_and_layer(target)
        concepts, words, warnings = self.vocabulary(model, values, progress)
        # one full pass per batch gives both the layer (read by a hook on the way) and the image embeddings
        means = layer_means(model, source, layer, batch_size=values["batch_size"], embeddings=True,
                            progress=progress)
        return self.label(model, str(target), unit, layer, source, means, concepts, words, warnings, values)

    def run_layers(self, model: ClipModel, layers: Sequence[str], source: Any, params: Any = None,
                   progress: Progress = no_progress) -> dict[str, ProbeResult]:
        """Every layer from one embedding of the vocabulary and one pass over the images."""
        values = self.resolve(params)
        layers = [self.parse_target(model, layer) for layer in layers]
        concepts, words, warnings = self.vocabulary(model, values, progress)
        means = layers_means(model, source, layers, batch_size=values["batch_size"], embeddings=True,
                             progress=progress)
        return {layer: self.label(model, layer, None, layer, source, means[layer], concepts, words, list(warnings),
                                  values) for layer in layers}

    def vocabulary(self, model: ClipModel, values: dict, progress: Progress) -> tuple[list[str], torch.Tensor, list]:
        """The concept words (given, or the default words the tokenizer knows), their text
        embeddings, and what to warn about them."""
        given = bool(values["concepts"].strip())
        concepts = self.concepts(values["concepts"]) if given else default_words(values["n_words"])
        readable = [not self.unknown(model, c) for c in concepts]
        known = [c for c, ok in zip(concepts, readable) if ok]
        unknown = [c for c, ok in zip(concepts, readable) if not ok]
        warnings = []
        if given and unknown:
            warnings.append(f"{len(unknown)} concept words are unknown to the model's tokenizer (their embeddings "
                            f"are all alike): {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
        elif unknown:  # the default vocabulary keeps only words the model can read
            concepts = known
            if len(concepts) < 2:
                raise ValueError(f"neuron_label: the model's tokenizer knows {len(concepts)} of the "
                                 f"{values['n_words']} default words; give -p concepts=...")
        if "{}" not in values["template"]:
            raise ValueError("neuron_label: the template must contain '{}'")
        words = self.embed(model, [values["template"].format(c) for c in concepts], progress)
        return concepts, words, warnings

    def label(self, model: ClipModel, text: str, unit: Any, layer: str, source: Any, means: Any,
              concepts: list[str], words: torch.Tensor, warnings: list, values: dict) -> ProbeResult:
        """Soft-WPMI labels of one unit or every unit of ``layer`` from the layer's per-image means."""
        given = bool(values["concepts"].strip())
        acts_np, skipped = means.acts, len(means.skipped)
        sims = torch.from_numpy(means.embeddings) @ words.float().cpu().T
        p = torch.softmax(sims / values["temperature"], dim=1).numpy()
        scores = soft_wpmi(acts_np, p, values["k"], values["lam"])   # [C, K]
        best = scores.argmax(axis=1)
        confidence = label_confidence(acts_np, p, best, values["k"])
        if values["k"] > acts_np.shape[0]:
            warnings.append(f"k={values['k']} is more than the {acts_np.shape[0]} images")
        channels = [unit.channel] if unit else range(acts_np.shape[1])
        if skipped:
            warnings.append(skipped_note([(source.record(i).id, why) for i, why in means.skipped]))
        top = np.argsort(-scores[list(channels)], axis=1)[:, :TOP_LABELS]          # [units, 5]
        rows = [{"unit": f"{layer}:{c}", "label": concepts[best[c]], "confidence": float(confidence[c]),
                 "score": float(scores[c, best[c]]), "runner_up": concepts[order[1]] if len(order) > 1 else ""}
                for c, order in zip(channels, top)]
        summary = {"layer": layer, "images": acts_np.shape[0], "concepts": len(concepts), "skipped": skipped,
                   "vocabulary": "given" if given else f"default: {len(concepts)} of the {values['n_words']} most "
                                                        f"frequent English words that the model's tokenizer knows"}
        if unit:
            summary.update({"unit": str(unit), "label": rows[0]["label"], "confidence": rows[0]["confidence"],
                            "score": rows[0]["score"]})
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, tables={"labels": rows},
                           arrays={"top_concepts": top,
                                   "top_scores": np.take_along_axis(scores[list(channels)], top, 1)},
                           summary=summary, params=values, warnings=warnings)

    @staticmethod
    def unknown(model: ClipModel, word: str) -> bool:
        """Whether the model's tokenizer says it cannot read ``word`` (tokenizers that cannot tell,
        such as open_clip's byte-pair one, read every word)."""
        check = getattr(model.tokenizer, "unknown_words", None)
        return bool(check(word)) if callable(check) else False

    @staticmethod
    def embed(model: ClipModel, prompts: list[str], progress: Progress, batch: int = 512) -> torch.Tensor:
        """Unit-norm text embeddings of ``prompts``, ``batch`` at a time (a 20,000-word vocabulary
        in one text-tower pass would need gigabytes of activations)."""
        rows = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch):
                rows.append(model.encode_text(prompts[start:start + batch]).float().cpu())
                progress(min(start + batch, len(prompts)), len(prompts), f"embedding {len(prompts)} concept words")
        return torch.cat(rows)

    @staticmethod
    def concepts(spec: str) -> list[str]:
        if spec.startswith("@"):
            path = check_readable(spec[1:])  # an app served to others reads only its --data folders
            if not path.is_file():
                raise ImageLoadError(f"neuron_label: concept file {path} does not exist")
            items = path.read_text(encoding="utf-8").splitlines()
        else:
            items = spec.split(",")
        words = list(dict.fromkeys(w.strip() for w in items if w.strip()))
        if not words:
            raise ValueError("neuron_label: the concept list is empty")
        return words
