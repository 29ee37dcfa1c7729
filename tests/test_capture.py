"""Interventions on a layer's output (``edited_layer``): the edit reaches the rest of the forward
pass, on ResNet maps and ViT token sequences alike, and never outlives its block."""

import pytest
import torch

from mmneurons.capture import capture_layers, channel_dim, edited_layer


def _zero(channel):
    def edit(view):
        view = view.clone()
        view[:, channel] = 0
        return view
    return edit


def test_channel_dim_of_each_layout():
    assert channel_dim(torch.zeros(2, 8, 4, 4)) == 1
    assert channel_dim(torch.zeros(2, 8)) == 1
    assert channel_dim(torch.zeros(2, 5, 8)) == 2


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_an_edit_reaches_later_layers_and_ends_with_its_block(kind, tiny_resnet, tiny_vit):
    model = tiny_resnet if kind == "resnet" else tiny_vit
    layer = "layer1.0" if kind == "resnet" else "transformer.resblocks.0"
    pixels = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.forward_visual(pixels)
        with edited_layer(model, layer, _zero(3)):
            acts = capture_layers(model, pixels, [layer])[layer]
            after = model.forward_visual(pixels)
        again = model.forward_visual(pixels)
    assert float(acts[:, 3].abs().max()) == 0 and float(acts[:, 4].abs().max()) > 0
    assert not torch.allclose(before, after)
    assert torch.equal(before, again)  # the hook is gone


def test_an_edit_that_changes_the_shape_is_refused(tiny_resnet):
    pixels = torch.rand(1, 3, tiny_resnet.image_size, tiny_resnet.image_size)
    with pytest.raises(ValueError, match="changed its shape"):
        with edited_layer(tiny_resnet, "layer1.0", lambda view: view[:, :2]), torch.no_grad():
            tiny_resnet.forward_visual(pixels)
    with torch.no_grad():
        tiny_resnet.forward_visual(pixels)  # and the model still works


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_attribution_is_the_derivative_of_scaling_each_unit(kind, tiny_resnet, tiny_vit):
    """layer_attribution[:, c] = d score / d s at s = 1, the unit's output (every position, a ViT's
    class token too) scaled by s: checked by central differences through edited_layer."""
    from mmneurons.capture import layer_attribution

    model = tiny_resnet if kind == "resnet" else tiny_vit
    layer = "layer1.0" if kind == "resnet" else "transformer.resblocks.0"
    pixels = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))
    direction = torch.randn(model.forward_visual(pixels).shape[1], generator=torch.Generator().manual_seed(2))

    def score(embeddings):
        return embeddings.double() @ direction.double()

    attribution = layer_attribution(model, pixels, layer, score)
    assert attribution.shape == (2, model.layer_info(layer).channels)
    eps = 1e-2
    def scaled(channel, factor):
        def edit(view):
            view = view.clone()
            view[:, channel] *= factor
            return view
        with edited_layer(model, layer, edit), torch.no_grad():
            return score(model.forward_visual(pixels))

    for channel in (0, 5):
        numeric = (scaled(channel, 1 + eps) - scaled(channel, 1 - eps)) / (2 * eps)
        assert torch.allclose(attribution[:, channel].double(), numeric, rtol=2e-2, atol=1e-4)
