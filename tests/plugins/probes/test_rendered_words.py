"""``rendered_words`` on several layers at once: one pass over the word list, the same tables as
one run per layer."""

from __future__ import annotations

from mmneurons.images import WordSource


class CountingWords(WordSource):
    """A word list that counts how often its images are made."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loads = 0

    def load(self, index):
        self.loads += 1
        return super().load(index)


def test_several_layers_from_one_pass_equal_one_run_each(registry, tiny_resnet):
    probe = registry.get("mmneurons_probes", "rendered_words")
    words = ["star", "moon", "ring", "cross", "heart", "arrow", "spiral", "square"]
    source = CountingWords(words, size=64)
    together = probe.run_layers(tiny_resnet, ["layer1.0", "layer3"], source, {"top": 3, "batch_size": 4})
    assert source.loads == len(words)                     # one pass for both layers
    for layer in ("layer1.0", "layer3"):
        alone = probe.run(tiny_resnet, layer, WordSource(words, size=64), {"top": 3, "batch_size": 4})
        assert together[layer].tables == alone.tables
        assert together[layer].target == layer and together[layer].summary == alone.summary
