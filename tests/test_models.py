"""The ClipModel wrapper and loading by id."""

from __future__ import annotations

import pytest
import torch

from mmneurons.models import LayerError, ModelLoadError, parse_model_id, resolve_device


def test_layers_list_canonical_shapes(tiny_resnet, tiny_vit):
    resnet = {layer.name: layer.shape for layer in tiny_resnet.layers()}
    assert resnet["layer1"] == (64, 16, 16) and resnet["layer4.0"] == (512, 2, 2)
    assert resnet["attnpool"] == (32, 1, 1)
    vit = {layer.name: layer.shape for layer in tiny_vit.layers()}
    assert vit["transformer.resblocks.1"] == (32, 4, 4) and vit["conv1"] == (32, 4, 4)


def test_vit_grid_is_the_patch_tokens(tiny_vit):
    """Block outputs drop the class token and lay patch i at row i // 4, column i % 4."""
    seq = torch.arange(1 * 17 * 32, dtype=torch.float32).view(1, 17, 32)
    grid = tiny_vit.to_grid("transformer.resblocks.0", seq)
    assert grid.shape == (1, 32, 4, 4)
    assert torch.equal(grid[0, :, 1, 2], seq[0, 1 + 1 * 4 + 2])
    tiny_vit.visual.transformer.batch_first = False
    try:
        assert torch.equal(tiny_vit.to_grid("transformer.resblocks.0", seq.transpose(0, 1)), grid)
    finally:
        tiny_vit.visual.transformer.batch_first = True


def test_encoders_and_zero_shot(tiny_model):
    x = torch.rand(3, 3, 64, 64)
    img = tiny_model.encode_image(x)
    assert img.shape == (3, 32) and torch.allclose(img.norm(dim=-1), torch.ones(3))
    clf = tiny_model.zero_shot_classifier(["dog", "cat"], templates=("a {}", "the {}"))
    assert clf.shape == (32, 2) and torch.allclose(clf.norm(dim=0), torch.ones(2))
    expected = torch.nn.functional.normalize(tiny_model.encode_text(["a dog", "the dog"]).mean(0), dim=-1)
    assert torch.allclose(clf[:, 0], expected, atol=1e-6)


def test_bad_inputs(tiny_resnet):
    with pytest.raises(ValueError, match="label list is empty"):
        tiny_resnet.zero_shot_classifier([])
    with pytest.raises(ValueError, match="must be 64x64.*got 32x32"):
        tiny_resnet.check_pixels(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_resnet.check_pixels(torch.rand(1, 1, 64, 64))
    with pytest.raises(LayerError, match="no layer 'layer5'. Did you mean 'layer4'"):
        tiny_resnet.module("layer5")


def test_parse_and_device():
    assert parse_model_id("openclip:RN50x4@openai") == ("openclip", "RN50x4@openai")
    assert parse_model_id("openclip:/a/b:c.pt") == ("openclip", "/a/b:c.pt")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("toaster")


def test_default_layer_reaches_the_output(tiny_resnet, tiny_vit):
    assert tiny_resnet.default_layer() == "layer4.0"          # the last block with spatial positions
    assert tiny_vit.default_layer() == "transformer.resblocks.0"  # the last one's patch tokens are unread
    assert tiny_resnet.resolve_layer("layer3") == "layer3"
    with pytest.raises(LayerError, match="no layer 'nope'"):
        tiny_resnet.resolve_layer("nope")


def test_vit_layers_list_each_blocks_mlp_hidden_units_and_auto_stays_on_the_residual_stream(tiny_vit):
    from mmneurons.activations import capture_layers
    from mmneurons.units import Unit

    layers = {info.name: info.shape for info in tiny_vit.layers()}
    names = list(layers)
    assert names == ["conv1", "transformer.resblocks.0.mlp.gelu", "transformer.resblocks.0",
                     "transformer.resblocks.1.mlp.gelu", "transformer.resblocks.1"]
    width = layers["transformer.resblocks.1"][0]
    assert layers["transformer.resblocks.1.mlp.gelu"] == (4 * width,) + layers["transformer.resblocks.1"][1:]
    assert tiny_vit.default_layer() == "transformer.resblocks.0"  # as before: the block before the last
    unit = Unit.parse(f"transformer.resblocks.1.mlp.gelu:{4 * width - 1}").validate(tiny_vit)
    x = torch.rand(2, 3, tiny_vit.image_size, tiny_vit.image_size)
    with torch.no_grad():
        hidden = capture_layers(tiny_vit, x, [unit.layer])[unit.layer]
    assert hidden.shape[1] == 4 * width and unit.read(hidden).shape == (2,)


def test_a_cuda_device_that_is_not_there_is_a_one_line_error():
    missing = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelLoadError, match="use --device cpu"):
        resolve_device(f"cuda:{missing}")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device is available here"):
            resolve_device("cuda")
