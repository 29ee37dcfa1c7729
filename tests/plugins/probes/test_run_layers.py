"""The probes that read images serve several layers from one pass (``Probe.run_layers``, how the
atlas runs a probe stage): each image loaded once, the same tables as one run per layer."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name, params", [("modality", {"top": 0, "profile": True}),
                                          ("neuron_label", {"n_words": 300, "k": 5})])
def test_several_layers_from_one_pass_equal_one_run_each(registry, tiny_resnet, name, params):
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=1, size=64)
    loads = []
    load = source.load
    source.load = lambda i: loads.append(i) or load(i)
    probe = registry.get("mmneurons_probes", name)
    together = probe.run_layers(tiny_resnet, ["layer1.0", "layer3"], source, params)
    assert sorted(loads) == list(range(len(source)))          # every image once, for both layers
    for layer in ("layer1.0", "layer3"):
        alone = probe.run(tiny_resnet, layer, source, params)
        assert together[layer].tables == alone.tables and together[layer].target == layer
