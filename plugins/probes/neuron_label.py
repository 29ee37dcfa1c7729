"""``neuron_label``: words for units from images alone (:mod:`mmneurons.analysis.labels`).

Concept words are embedded with the model's own text encoder and the probing images with its image
encoder; p(concept | image) is the softmax of their similarities over the concepts. Each unit's
label is the concept whose probability best follows the unit's activation over the images
(``method=correlation``) or CLIP-Dissect's soft-WPMI with its top-k images (``method=soft_wpmi``);
its confidence is the margin over the runner-up; runners-up that still explain part of the unit
become further labels (polysemantic units). Each label comes with its evidence: the images that gave
it and the runners-up with their scores. Without a concept list the vocabulary is the 20,000 most
frequent English words (wordfreq's bundled data, as CLIP-Dissect's 20,000 common words) that the
model's tokenizer reads, plus every word of a tokenizer with a closed word list."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mmneurons.access import check_readable
from mmneurons.activations import layer_means, layers_means
from mmneurons.analysis.labels import LABEL_METHODS, concept_probabilities, label_units
from mmneurons.images import ImageLoadError, skipped_note
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import unit_and_layer

from .rendered_words import default_words

#: labels per unit kept in the result's arrays (the label and its runners-up)
TOP_LABELS = 5
#: evidence images per label
EVIDENCE = 5


def model_vocabulary(model: ClipModel, n_words: int) -> list[str]:
    """The default vocabulary: the ``n_words`` most frequent English words the model's tokenizer
    reads, then the words of a tokenizer that lists the words it reads (``known_words()``)."""
    words = [w for w in default_words(n_words) if not NeuronLabelProbe.unknown(model, w)]
    listed = getattr(model.tokenizer, "known_words", None)
    return list(dict.fromkeys(words + (list(listed()) if callable(listed) else [])))


class NeuronLabelProbe(Probe):
    name = "neuron_label"
    description = ("Label units with concept words from images alone: the word whose zero-shot probability follows "
                   "the unit, with a confidence, runners-up, further labels and the images that gave it.")
    targets = ("unit", "layer")
    atlas: dict = {}  # an atlas stage with the default parameters
    params = (Param("concepts", "str", "",
                    help="comma-separated concept words, @FILE with one per line, or empty: the n_words most "
                         "frequent English words"),
              Param("n_words", "int", 20_000, min=2, max=100_000,
                    help="size of the default vocabulary (wordfreq; CLIP-Dissect used 20,000 common words)"),
              Param("template", "str", "{}", help="prompt template for the concept words"),
              Param("method", "str", "correlation", choices=LABEL_METHODS,
                    help="correlation: the word whose probability follows the unit over all images; soft_wpmi: "
                         "CLIP-Dissect's score on the unit's top-k images"),
              Param("min_gain", "float", 0.1, min=0.0, max=1.0,
                    help="R^2 a runner-up must add to become a further label (1: one label per unit)"),
              Param("max_labels", "int", 3, min=1, max=10, help="most labels per unit"),
              Param("k", "int", 20, min=1, help="top images per unit (soft_wpmi)"),
              Param("lam", "float", 1.0, min=0.0, help="weight of the concept prior (lambda, soft_wpmi)"),
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
        warnings = []
        if given:
            concepts = self.concepts(values["concepts"])
            unknown = [c for c in concepts if self.unknown(model, c)]
            if unknown:
                warnings.append(f"{len(unknown)} concept words are unknown to the model's tokenizer (their embeddings "
                                f"are all alike): {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
        else:  # the default vocabulary keeps only words the model can read
            concepts = model_vocabulary(model, values["n_words"])
            if len(concepts) < 2:
                raise ValueError(f"neuron_label: the model's tokenizer knows {len(concepts)} of the "
                                 f"{values['n_words']} default words; give -p concepts=...")
        if "{}" not in values["template"]:
            raise ValueError("neuron_label: the template must contain '{}'")
        words = self.embed(model, [values["template"].format(c) for c in concepts], progress)
        return concepts, words, warnings

    def label(self, model: ClipModel, text: str, unit: Any, layer: str, source: Any, means: Any,
              concepts: list[str], words: torch.Tensor, warnings: list, values: dict) -> ProbeResult:
        """Labels of one unit or every unit of ``layer`` from the layer's per-image means."""
        given = bool(values["concepts"].strip())
        acts, skipped = means.acts, len(means.skipped)
        p = concept_probabilities(means.embeddings, words, values["temperature"])
        channels = [unit.channel] if unit else list(range(acts.shape[1]))
        labels = label_units(acts, p, concepts, method=values["method"], units=channels, k=values["k"],
                             lam=values["lam"], top=TOP_LABELS, min_gain=values["min_gain"],
                             max_labels=values["max_labels"], evidence=EVIDENCE)
        if values["method"] == "soft_wpmi" and values["k"] > acts.shape[0]:
            warnings.append(f"k={values['k']} is more than the {acts.shape[0]} images")
        if skipped:
            warnings.append(skipped_note([(source.record(i).id, why) for i, why in means.skipped]))
        image_ids = [source.record(i).id for i in means.indices]
        rows = []
        for row, c in enumerate(channels):
            runners = [f"{concepts[k]} ({s:.3g})" for k, s in zip(labels.candidates[row, 1:], labels.scores[row, 1:])]
            rows.append({"unit": f"{layer}:{c}", "label": labels.label(row), "labels": ", ".join(labels.names(row)),
                         "confidence": float(labels.confidence[row]), "score": float(labels.scores[row, 0]),
                         "runner_up": concepts[labels.candidates[row, 1]] if labels.candidates.shape[1] > 1 else "",
                         # lists are data: the atlas keeps them per unit but searches only the labels
                         "runners_up": runners, "evidence": [image_ids[i] for i in labels.evidence[row]]})
        summary = {"layer": layer, "images": acts.shape[0], "concepts": len(concepts), "skipped": skipped,
                   "method": values["method"],
                   "polysemantic": sum(len(names) > 1 for names in labels.labels),
                   "vocabulary": "given" if given else f"default: {len(concepts)} words the model's tokenizer reads "
                                                        f"(of the {values['n_words']} most frequent English words, "
                                                        f"and any word list of its own)"}
        tables: dict = {"labels": rows}
        images, captions = [], []
        if unit:
            summary.update({"unit": str(unit), "label": rows[0]["label"], "labels": rows[0]["labels"],
                            "confidence": rows[0]["confidence"], "score": rows[0]["score"]})
            tables["candidates"] = [{"rank": r + 1, "concept": concepts[k], "score": float(s),
                                     "label": bool(k in labels.labels[0])}
                                    for r, (k, s) in enumerate(zip(labels.candidates[0], labels.scores[0]))]
            best = labels.candidates[0, 0]
            tables["evidence"] = [{"image": image_ids[i], "activation": float(acts[i, unit.channel]),
                                   f"p({concepts[best]})": float(p[i, best])} for i in labels.evidence[0]]
            for i in labels.evidence[0]:
                images.append(source.load(means.indices[i]).convert("RGB"))
                captions.append(f"{image_ids[i]}: activation {acts[i, unit.channel]:.3g}, "
                                f"p({concepts[best]}) {p[i, best]:.2f}")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, tables=tables,
                           arrays={"top_concepts": labels.candidates, "top_scores": labels.scores},
                           images=images, captions=captions, summary=summary, params=values, warnings=warnings)

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
