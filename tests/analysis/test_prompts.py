"""A prompt's gradient at a neutral image: the direction is the normalized gradient, and the
text_direction visualizer and the neuron_search probe read the same one."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.analysis import neutral_image, prompt_gradient, text_direction


def test_direction_is_the_normalized_gradient_the_probe_ranks_by(registry, tiny_resnet):
    grad = prompt_gradient(tiny_resnet, "a red star", "layer3")
    direction = text_direction(tiny_resnet, "a red star", "layer3")
    assert np.allclose(direction.vector, grad / np.linalg.norm(grad), atol=1e-6)
    probe = registry.get("mmneurons_probes", "neuron_search").run(tiny_resnet, "a red star", None, {"layer": "layer3"})
    assert np.allclose(probe.arrays["scores"], grad)
    assert direction.label == "text:a red star@layer3"


def test_neutral_images_and_bad_input(tiny_resnet):
    assert float(neutral_image(tiny_resnet, "white").min()) == 1.0
    assert neutral_image(tiny_resnet).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="allowed: gray, black, white"):
        neutral_image(tiny_resnet, "pink")
    with pytest.raises(ValueError, match="the prompt is empty"):
        prompt_gradient(tiny_resnet, "  ", "layer3")
