"""The ``openclip`` model provider: ids, offline errors, local checkpoints."""

from __future__ import annotations

import pytest
import torch

from mmneurons.models import ClipModel, ModelLoadError, load_model
from mmneurons.plugins.openclip_models import weights_location


@pytest.mark.parametrize("model_id, message", [
    ("RN50", "has no provider: write PROVIDER:NAME"),
    ("nosuch:thing", "unknown model provider 'nosuch'"),
    ("openclip:RN5@openai", "unknown open_clip model 'RN5'; did you mean RN50"),
    ("openclip:RN50@nosuchtag", "unknown pretrained tag 'nosuchtag' for RN50; tags: openai"),
    ("openclip:RN50", "name the weights, e.g. RN50@openai"),
    ("openclip:/no/such/file.pt", "checkpoint file /no/such/file.pt does not exist"),
])
def test_unknown_model_ids(registry, model_id, message):
    with pytest.raises(ModelLoadError) as err:
        load_model(model_id)
    assert message in str(err.value)


def test_offline_error_names_model_tag_cache_and_the_default(registry):
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:RN50x4@openai")
    text = str(err.value)
    assert "model 'RN50x4' tag 'openai'" in text and "cache (" in text and "demo:shapes" in text


def test_local_checkpoint_round_trip(registry, tiny_resnet, tiny_checkpoint):
    loaded = load_model(f"openclip:{tiny_checkpoint}")
    assert isinstance(loaded, ClipModel) and loaded.image_size == 64 and loaded.mean == tiny_resnet.mean
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.encode_image(x), tiny_resnet.encode_image(x), atol=1e-6)
    assert torch.equal(loaded.tokenize(["a dog"]), tiny_resnet.tokenize(["a dog"]))


def test_checkpoint_without_config_asks_for_the_architecture(registry, tmp_path, tiny_resnet):
    path = tmp_path / "plain.pt"
    torch.save(tiny_resnet.model.state_dict(), path)
    with pytest.raises(ModelLoadError, match="holds no model config; name the architecture: openclip:MODEL@"):
        load_model(f"openclip:{path}")


def test_checkpoint_with_code_is_refused(registry, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_cfg": object(), "state_dict": {}}, path)
    with pytest.raises(ModelLoadError, match="cannot read .* as a weights-only checkpoint"):
        load_model(f"openclip:{path}")


def test_random_architecture_loads(registry):
    model = load_model("openclip:RN50@random", device="cpu")
    assert model.kind == "resnet" and model.image_size == 224 and model.meta["architecture"] == "RN50"


def test_cache_lookup_points_at_the_cache(tmp_path):
    import open_clip

    cfg = open_clip.get_pretrained_cfg("RN50", "openai")
    cached, folder, host = weights_location(cfg, cache_dir=str(tmp_path))
    assert cached is None and folder == str(tmp_path) and host


def test_a_checkpoint_whose_config_claims_an_impossible_model_is_refused_before_allocating(tiny_checkpoint,
                                                                                            tmp_path):
    import torch

    from mmneurons.models import ModelLoadError, load_model

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["model_cfg"]["vision_cfg"]["width"] = 2 ** 15  # about 10^13 parameters: 40 TB in float32
    bad = tmp_path / "huge.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ModelLoadError, match=r"describes [\d,]+ parameters \([\d,.]+ GiB in float32\) but the file "
                                             r"holds [\d,]+: the config does not belong to these weights"):
        load_model(f"openclip:{bad}")
    ckpt["model_cfg"]["vision_cfg"]["layers"] = "many"
    torch.save(ckpt, bad)
    with pytest.raises(ModelLoadError, match="cannot be built"):
        load_model(f"openclip:{bad}")
