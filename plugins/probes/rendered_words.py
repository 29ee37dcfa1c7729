"""``rendered_words``: the paper's English words rastered as images, ranked per unit. With
``centered`` the values are shown relative to the mean over all words (the paper subtracted the
mean over its 10,000 words); ranks do not change."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmneurons.activations import layer_means, layers_means
from mmneurons.images import WordSource
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import unit_and_layer


def default_words(n: int) -> list[str]:
    """The ``n`` most frequent English words made of letters only (``wordfreq``'s bundled data)."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", n * 2) if w.isalpha()][:n]


class RenderedWordsProbe(Probe):
    name = "rendered_words"
    description = "Words rendered as images, ranked by how much they activate a unit (or each unit of a layer)."
    targets = ("unit", "layer")
    source = "words"
    atlas: dict = {}  # an atlas stage with the default parameters
    params = (Param("top", "int", 20, min=1, help="words to list per unit"),
              Param("centered", "bool", True, help="report values minus the mean over all words"),
              Param("n_words", "int", 10_000, min=1, max=100_000, help="size of the default word list (wordfreq)"),
              Param("size", "int", 0, min=0, help="rendering size in pixels (0: the model's input size)"),
              Param("batch_size", "int", 64, min=1, help="words per forward pass"))

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        unit, layer = unit_and_layer(target)
        source = self.words_source(model, source, values)
        acts = layer_means(model, source, layer, batch_size=values["batch_size"], progress=progress).acts
        return self.result(model, str(target), unit, layer, source.words, acts, values)

    def run_layers(self, model: ClipModel, layers: Sequence[str], source: Any, params: Any = None,
                   progress: Progress = no_progress) -> dict[str, ProbeResult]:
        """Every layer from one pass over the word list."""
        values = self.resolve(params)
        layers = [self.parse_target(model, layer) for layer in layers]
        source = self.words_source(model, source, values)
        means = layers_means(model, source, layers, batch_size=values["batch_size"], progress=progress)
        return {layer: self.result(model, layer, None, layer, source.words, means[layer].acts, values)
                for layer in layers}

    @staticmethod
    def words_source(model: ClipModel, source: Any, values: dict) -> WordSource:
        if source is None:
            source = WordSource(default_words(values["n_words"]), size=values["size"] or model.image_size)
        if not isinstance(source, WordSource):
            raise TypeError("rendered_words takes a WordSource (a word list), not an image folder")
        return source

    def result(self, model: ClipModel, text: str, unit: Any, layer: str, words: list[str], acts: np.ndarray,
               values: dict) -> ProbeResult:
        """The ranking of ``words`` by their activations ``acts`` [words, C] for one unit or the layer."""
        shown = acts - acts.mean(axis=0, keepdims=True) if values["centered"] else acts
        top = min(values["top"], len(words))
        warnings = [f"top={values['top']} is more than the {len(words)} words"] if values["top"] > len(words) else []
        if unit is not None:
            order = np.argsort(-acts[:, unit.channel])[:top]
            table = [{"rank": r + 1, "word": words[i], "activation": float(shown[i, unit.channel])}
                     for r, i in enumerate(order)]
            return ProbeResult(probe=self.name, model_id=model.model_id, target=text, tables={"words": table},
                               summary={"unit": str(unit), "best": table[0]["word"], "words": len(words)},
                               arrays={"activations": acts[:, unit.channel]}, warnings=warnings, params=values)
        order = np.argsort(-acts, axis=0)[:top].T  # [C, top]
        table = [{"unit": f"{layer}:{c}", "words": ", ".join(words[i] for i in order[c][:5]),
                  "best": words[order[c][0]]} for c in range(acts.shape[1])]
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, tables={"units": table},
                           summary={"layer": layer, "words": len(words)}, arrays={"top_indices": order},
                           warnings=warnings, params=values)
