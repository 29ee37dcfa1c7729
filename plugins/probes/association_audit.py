"""``association_audit``: what a model ties together (:mod:`mmneurons.analysis.associations`).

Three questions, by target:

- a **unit** (``layer4.0:17``): the words and image categories it responds to, how strongly, and
  which of them are unexpected given its label (a pair you flag with ``flag``, or a concept farther
  from the label in the model's own text space than the median vocabulary word);
- **concepts** (``ring,circle`` or more): for every pair, the units that respond strongly to both
  (over images, the text tower and rendered words) and the share of one concept's zero-shot logit
  carried by the units labeled with the other; pairs ranked by their shared response;
- **groups** (the concepts, with ``attributes`` given): the skew of the zero-shot head and of the
  units across groups: Cramer's V of groups x assigned attributes, MaxSkew@k per attribute and per
  unit. A group is the images of that category when every group is a category of the source, else
  the images the head assigns to the group's prompt.

An audit shows associations in the model on the images given, not intent or cause; the training
data decides them (README, "What the association audit can and cannot show")."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mmneurons.activations import layer_means
from mmneurons.analysis.associations import (cramers_v, group_variance_share, image_responses, logit_contributions,
                                             logit_share, shared_response, shared_units, top_k_skew, word_responses,
                                             z_over_units)
from mmneurons.analysis.labels import concept_correlation, concept_probabilities, label_units
from mmneurons.analysis.prompts import prompt_gradient
from mmneurons.images import WordSource, skipped_note
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import Unit, UnitError

from .neuron_label import NeuronLabelProbe, model_vocabulary
from .rendered_words import default_words

CHANNELS = ("images", "text", "words")


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in str(text).split(",") if t.strip()))


def _flagged(spec: str) -> set[frozenset]:
    """``a:b;c:d`` -> the unordered pairs."""
    pairs = set()
    for item in spec.split(";"):
        if not item.strip():
            continue
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f"association audit: flag {item.strip()!r}: write pairs as 'a:b;c:d'")
        pairs.add(frozenset((a.strip().lower(), b.strip().lower())))
    return pairs


class AssociationAuditProbe(Probe):
    name = "association_audit"
    description = ("What the model ties together: a unit's concepts and the unexpected ones; for concepts, the units "
                   "they share and how much of one's logit the other's units carry; for groups, the skew of the "
                   "zero-shot head and of the units.")
    targets = ("unit", "concepts")
    params = (Param("layer", "str", "auto", help="layer audited for concepts and groups ('auto': the last block)"),
              Param("n", "int", 10, min=1, max=10_000, help="units whose shared response scores a pair"),
              Param("z_min", "float", 1.0, min=0.0, help="response (z) that counts as strong"),
              Param("top", "int", 10, min=1, max=10_000, help="rows per list"),
              Param("words", "int", 300, min=0, max=20_000,
                    help="reference words for the rendered-words channel (0: no rendered words)"),
              Param("vocabulary", "str", "",
                    help="words for the labels, comma-separated or @FILE (empty: neuron_label's default vocabulary); "
                         "the audited concepts are always added"),
              Param("flag", "str", "", help="pairs you do not expect a unit to tie, 'a:b;c:d'"),
              Param("attributes", "str", "",
                    help="attributes for the skew audit, comma-separated; with them the concepts are groups"),
              Param("group_template", "str", "a photo of a {}", help="prompt of a group the head assigns images to"),
              Param("attribute_template", "str", "a photo of a {}", help="prompt of an attribute"),
              Param("k", "int", 20, min=1, help="top images per ranking for MaxSkew@k"),
              Param("template", "str", "{}", help="prompt template of the concepts and label words"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def parse_target(self, model: ClipModel, target: Any) -> Any:
        """A unit (``layer:channel``) or a comma-separated list of concepts."""
        text = str(target).strip()
        try:
            return Unit.parse(target).validate(model)
        except UnitError:
            if not _names(text):
                raise ValueError("association audit: give a unit (layer4.0:17), concepts (ring,circle) or groups "
                                 "with -p attributes=...") from None
            return text

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        for key in ("template", "group_template", "attribute_template"):
            if "{}" not in values[key]:
                raise ValueError(f"association audit: {key} must contain '{{}}'")
        flagged = _flagged(values["flag"])
        if isinstance(target, Unit):
            return self.unit_audit(model, target, source, values, flagged, progress)
        concepts = _names(target)
        layer = model.resolve_layer(values["layer"])
        if values["attributes"].strip():
            return self.skew_audit(model, layer, concepts, _names(values["attributes"]), source, values, progress)
        if len(concepts) < 2:
            raise ValueError(f"association audit: {target!r} is one concept; give two or more (ring,circle), or "
                             f"groups with -p attributes=...")
        return self.pair_audit(model, layer, concepts, source, values, progress)

    # -- shared steps ----------------------------------------------------------------------------
    def read(self, model: ClipModel, layer: str, source: Any, values: dict, progress: Progress):
        """(per-image layer means with embeddings, each kept image's category, warnings)."""
        means = layer_means(model, source, layer, batch_size=values["batch_size"], embeddings=True,
                            progress=progress)
        categories = [source.record(i).category for i in means.indices]
        warnings = [skipped_note([(source.record(i).id, why) for i, why in means.skipped])] if means.skipped else []
        return means, categories, warnings

    def labels(self, model: ClipModel, means: Any, extra: list[str], values: dict, progress: Progress,
               units: list[int] | None = None):
        """(labels of ``units`` (default: all) over the vocabulary plus ``extra`` words
        (:func:`label_units`), the words, their embeddings, p(word | image))."""
        given = values["vocabulary"].strip()
        vocabulary = NeuronLabelProbe.concepts(given) if given else model_vocabulary(model, 20_000)
        words = list(dict.fromkeys(vocabulary + extra))
        embedded = NeuronLabelProbe.embed(model, [values["template"].format(w) for w in words], progress)
        p = concept_probabilities(means.embeddings, embedded)
        return label_units(means.acts, p, words, units=units), words, embedded, p

    # -- a unit ----------------------------------------------------------------------------------
    def unit_audit(self, model: ClipModel, unit: Unit, source: Any, values: dict, flagged: set,
                   progress: Progress) -> ProbeResult:
        means, categories, warnings = self.read(model, unit.layer, source, values, progress)
        extra = sorted({w for pair in flagged for w in pair})
        c = unit.channel
        labels, words, embedded, p = self.labels(model, means, extra, values, progress, units=[c])
        label, unit_labels = labels.label(0), labels.names(0)
        scores = concept_correlation(means.acts[:, [c]], p)[0]                 # [K]
        order = [k for k in np.argsort(-scores)[: values["top"]] if scores[k] > 0]
        tied = [("word", words[k], float(scores[k])) for k in order]  # correlation with p(word | image)
        named = sorted({x for x in categories if x is not None})
        if len(named) >= 2:  # z of the category's mean activation over the images
            responses = image_responses(means.acts[:, [c]], categories, named)[:, 0]
            tied += [("image category", named[k], float(responses[k]))
                     for k in np.argsort(-responses)[: values["top"]] if responses[k] > 0]
        index = {w: i for i, w in enumerate(words)}
        missing = sorted({name for _, name, _ in tied if name not in index})
        extra_embedded = (NeuronLabelProbe.embed(model, [values["template"].format(w) for w in missing], progress)
                          if missing else None)
        vectors = {w: embedded[i] for w, i in index.items()}
        vectors.update({w: extra_embedded[i] for i, w in enumerate(missing)})
        anchor = vectors[label].float()
        to_label = {w: float(v.float() @ anchor / (v.float().norm() * anchor.norm())) for w, v in vectors.items()}
        far = float(np.median([to_label[w] for w in words if w != label]))
        rows = []
        for kind, name, strength in tied:
            if name == label:
                continue
            why = []
            if frozenset((name.lower(), label.lower())) in flagged:
                why.append("flagged")
            if to_label[name] < far:
                why.append("far from the label in text space")
            rows.append({"concept": name, "from": kind, "strength": strength,
                         "similarity_to_label": to_label[name], "unexpected": bool(why), "why": ", ".join(why)})
        summary = {"unit": str(unit), "label": label, "labels": ", ".join(unit_labels),
                   "confidence": float(labels.confidence[0]),
                   "unexpected": list(dict.fromkeys(r["concept"] for r in rows if r["unexpected"])),
                   "far_below": far,
                   "images": len(means.indices), "vocabulary": len(words)}
        if len(named) < 2:
            warnings.append("the images have fewer than two categories: the unit's image categories are not listed")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=str(unit), summary=summary,
                           tables={"ties": rows}, params=values, warnings=warnings)

    # -- concepts --------------------------------------------------------------------------------
    def responses(self, model: ClipModel, layer: str, concepts: list[str], means: Any, categories: list,
                  values: dict, progress: Progress) -> tuple[dict[str, np.ndarray], list[str]]:
        """``{channel: [K, C] responses}`` over the channels the source and parameters allow."""
        out, notes = {}, []
        named = set(categories)
        if all(c in named for c in concepts):
            out["images"] = image_responses(means.acts, categories, concepts)
        else:
            absent = ", ".join(c for c in concepts if c not in named)
            notes.append(f"no image channel: the source has no images of {absent} (categories are folder names)")
        progress(0, len(concepts), "text-tower responses")
        out["text"] = z_over_units(np.stack([prompt_gradient(model, values["template"].format(c), layer)
                                             for c in concepts]))
        if values["words"]:
            reference = [w for w in default_words(values["words"] + len(concepts)) if w not in concepts]
            rendered = WordSource(reference[: values["words"]] + concepts, size=model.image_size)
            acts = layer_means(model, rendered, layer, batch_size=values["batch_size"], progress=progress).acts
            out["words"] = word_responses(acts[-len(concepts):], acts[: -len(concepts)])
        return out, notes

    def pair_audit(self, model: ClipModel, layer: str, concepts: list[str], source: Any, values: dict,
                   progress: Progress) -> ProbeResult:
        means, categories, warnings = self.read(model, layer, source, values, progress)
        responses, notes = self.responses(model, layer, concepts, means, categories, values, progress)
        warnings += notes
        labels, *_ = self.labels(model, means, concepts, values, progress)
        labeled = {c: np.array([c in labels.names(u) for u in range(means.acts.shape[1])]) for c in concepts}
        contributions, on = {}, {}
        for i, concept in enumerate(concepts):
            progress(i, len(concepts), f"logit contributions of {concept!r}")
            chosen = [j for j, cat in enumerate(categories) if cat == concept]
            indices = [means.indices[j] for j in chosen] if chosen else list(means.indices)
            contributions[concept], _ = logit_contributions(model, source, layer, values["template"].format(concept),
                                                            indices, batch_size=values["batch_size"])
            on[concept] = f"its {len(chosen)} images" if chosen else "all images"
        rank_by = "images" if "images" in responses else "text"
        k_of = {c: i for i, c in enumerate(concepts)}
        pairs = []
        for a, b in itertools.combinations(concepts, 2):
            row: dict = {"a": a, "b": b}
            for channel, r in responses.items():
                row[f"shared_{channel}"] = shared_response(r[k_of[a]], r[k_of[b]], values["n"])
                row[f"strong_{channel}"] = int((np.minimum(r[k_of[a]], r[k_of[b]]) >= values["z_min"]).sum())
            row["share_of_b_logit_by_a_units"] = logit_share(contributions[b], labeled[a])
            row["share_of_a_logit_by_b_units"] = logit_share(contributions[a], labeled[b])
            row["units_labeled_a"], row["units_labeled_b"] = int(labeled[a].sum()), int(labeled[b].sum())
            pairs.append(row)
        pairs.sort(key=lambda r: -r[f"shared_{rank_by}"])
        for rank, row in enumerate(pairs, 1):
            row["rank"] = rank
        first = pairs[0]
        order, _ = shared_units(responses[rank_by][k_of[first["a"]]], responses[rank_by][k_of[first["b"]]])
        units = []
        for u in order[: values["top"]]:
            row = {"unit": f"{layer}:{int(u)}", "labels": ", ".join(labels.names(int(u)))}
            for channel, r in responses.items():
                row[f"{first['a']}_{channel}"] = float(r[k_of[first["a"]], u])
                row[f"{first['b']}_{channel}"] = float(r[k_of[first["b"]], u])
            units.append(row)
        summary = {"layer": layer, "concepts": concepts, "ranked_by": rank_by, "channels": list(responses),
                   "images": len(means.indices), "top_pair": f"{first['a']} / {first['b']}",
                   "logits_on": on, "self_share": {c: logit_share(contributions[c], labeled[c]) for c in concepts}}
        return ProbeResult(probe=self.name, model_id=model.model_id, target=",".join(concepts), summary=summary,
                           tables={"pairs": pairs, "shared_units": units},
                           arrays={f"responses_{k}": v for k, v in responses.items()}, params=values,
                           warnings=warnings)

    # -- groups ----------------------------------------------------------------------------------
    def skew_audit(self, model: ClipModel, layer: str, groups: list[str], attributes: list[str], source: Any,
                   values: dict, progress: Progress) -> ProbeResult:
        if len(groups) < 2 or len(attributes) < 2:
            raise ValueError("association audit: the skew audit needs at least two groups and two attributes")
        means, categories, warnings = self.read(model, layer, source, values, progress)
        embeddings = means.embeddings
        attribute_text = NeuronLabelProbe.embed(model, [values["attribute_template"].format(a) for a in attributes],
                                                progress)
        attribute_p = concept_probabilities(embeddings, attribute_text)                 # [N, A]
        if all(g in set(categories) for g in groups):
            keep = np.array([cat in groups for cat in categories])
            group_of = np.array([groups.index(cat) if cat in groups else -1 for cat in categories])
            grouping = "image categories"
        else:
            group_text = NeuronLabelProbe.embed(model, [values["group_template"].format(g) for g in groups], progress)
            group_of = concept_probabilities(embeddings, group_text).argmax(axis=1)
            keep = np.ones(len(group_of), dtype=bool)
            grouping = "the zero-shot head's group (no category matches every group)"
        group_of, acts, attribute_p = group_of[keep], means.acts[keep], attribute_p[keep]
        assigned = attribute_p.argmax(axis=1)
        table = np.zeros((len(groups), len(attributes)), dtype=int)
        np.add.at(table, (group_of, assigned), 1)
        k = min(values["k"], len(group_of))
        attribute_rows = []
        for a, attribute in enumerate(attributes):
            skew, g = top_k_skew(attribute_p[:, a], group_of, len(groups), k)
            attribute_rows.append({"attribute": attribute, "max_skew": skew, "over_represented": groups[g],
                                   **{f"assigned_{group}": int(table[i, a]) for i, group in enumerate(groups)}})
        unit_rows = []
        explained = group_variance_share(acts, group_of, len(groups))
        for c in range(acts.shape[1]):
            skew, g = top_k_skew(acts[:, c], group_of, len(groups), k)
            unit_rows.append({"unit": f"{layer}:{c}", "max_skew": skew, "over_represented": groups[g],
                              "group_variance_share": float(explained[c])})
        unit_rows.sort(key=lambda r: (-r["max_skew"], -r["group_variance_share"]))
        counts = np.bincount(group_of, minlength=len(groups))
        if (counts == 0).any():
            warnings.append(f"no image in group {', '.join(g for g, n in zip(groups, counts) if n == 0)}")
        summary = {"layer": layer, "groups": groups, "attributes": attributes, "grouping": grouping,
                   "images": int(len(group_of)), "images_per_group": dict(zip(groups, counts.tolist())),
                   "cramers_v": cramers_v(table), "head_max_skew": max(r["max_skew"] for r in attribute_rows),
                   "k": k}
        contingency = [{"group": g, **{a: int(table[i, j]) for j, a in enumerate(attributes)}}
                       for i, g in enumerate(groups)]
        return ProbeResult(probe=self.name, model_id=model.model_id, target=",".join(groups), summary=summary,
                           tables={"contingency": contingency, "attributes": attribute_rows,
                                   "units": unit_rows[: values["top"]]},
                           arrays={"contingency": table}, params=values, warnings=warnings)
