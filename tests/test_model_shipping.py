"""A model packed for another process (how the Ray engine ships it): pickled the way Ray pickles,
it comes back computing exactly what it computed, with its structure, ties and dtypes."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from mmneurons.capture import capture_layers
from mmneurons.model_shipping import pack_model
from mmneurons.sae import SAE, SAEInfo, attach_sae


def _shipped(model):
    """``model`` packed, pickled with protocol 5 (Ray's) and unpacked; the skeleton's size."""
    packed = pack_model(model)
    skeleton_bytes = len(pickle.dumps(packed.skeleton, protocol=5))
    return pickle.loads(pickle.dumps(packed, protocol=5)).unpack(), skeleton_bytes


def _pixels(model, n=3):
    return torch.rand(n, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_a_shipped_model_computes_what_it_computed(kind, tiny_resnet, tiny_vit):
    model = tiny_resnet if kind == "resnet" else tiny_vit
    shipped, skeleton_bytes = _shipped(model)
    assert shipped is not model and shipped.model_id == model.model_id
    weight_bytes = sum(t.numel() * t.element_size() for t in model.model.state_dict().values())
    # the skeleton carries the structure (and the tokenizer), not the tensors' data
    assert skeleton_bytes < len(pickle.dumps(model, protocol=5)) - 0.99 * weight_bytes
    every = lambda m: list(m.model.named_parameters(remove_duplicate=False)) + list(  # noqa: E731
        m.model.named_buffers(remove_duplicate=False))
    pairs = list(zip(every(model), every(shipped), strict=True))
    for (name, before), (again, after) in pairs:  # non-persistent buffers too (the text mask)
        assert name == again and after.device.type == "cpu" and after.dtype == before.dtype
        assert torch.equal(after, before) and after.requires_grad == before.requires_grad
        assert after.data_ptr() != before.data_ptr()
    x = _pixels(model)
    with torch.no_grad():
        assert torch.equal(shipped.encode_image(x), model.encode_image(x))
        assert torch.equal(shipped.encode_text(["a star", "a ring"]), model.encode_text(["a star", "a ring"]))
    after = next(shipped.model.parameters())
    after.data.add_(1.0)  # its own writable memory: the original is untouched
    assert not torch.equal(after, next(model.model.parameters()))


def test_ties_bf16_and_an_attached_sae_survive_the_trip(tiny_vit):
    model = copy.deepcopy(tiny_vit)
    blocks = model.model.visual.transformer.resblocks
    blocks[1].mlp.c_fc.weight = blocks[0].mlp.c_fc.weight  # one Parameter in two places
    info = SAEInfo(layer="transformer.resblocks.0", model_id=model.model_id, model_sha256=None, features=24, k=4,
                   channels=model.layer_info("transformer.resblocks.0").channels)
    name = attach_sae(model, SAE(info, seed=3))
    model.model.visual.proj.data = model.model.visual.proj.data.to(torch.bfloat16)
    model.model.visual.proj.requires_grad_(False)

    shipped, _ = _shipped(model)
    again = shipped.model.visual.transformer.resblocks
    assert again[1].mlp.c_fc.weight is again[0].mlp.c_fc.weight
    proj = shipped.model.visual.proj
    assert proj.dtype == torch.bfloat16 and not proj.requires_grad
    assert torch.equal(proj.view(torch.int16), model.model.visual.proj.view(torch.int16))
    model.model.visual.proj.data = model.model.visual.proj.data.float()
    shipped.model.visual.proj.data = shipped.model.visual.proj.data.float()
    x = _pixels(model)
    with torch.no_grad():
        expected, got = capture_layers(model, x, [name])[name], capture_layers(shipped, x, [name])[name]
    assert expected.abs().sum() > 0 and torch.equal(got, expected)


def test_only_a_cpu_model_is_packed(tiny_resnet):
    model = copy.copy(tiny_resnet)
    model.device = torch.device("meta")
    with pytest.raises(ValueError, match="on the CPU"):
        pack_model(model)
