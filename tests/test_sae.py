"""An SAE and its file: the TopK code, the round trip, files it refuses to write or read, models it
refuses, and the SAE the embedded model ships."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from mmneurons.sae import SAE, SAEError, SAEInfo, shipped_sae, shipped_sae_layers


def _sae(model, layer="layer3.0", features=96, k=8) -> SAE:
    info = SAEInfo(layer=layer, model_id=model.model_id, model_sha256=None, features=features, k=k,
                   channels=model.layer_info(layer).channels)
    return SAE(info, seed=3)


def test_the_code_keeps_the_k_largest_and_the_decoder_stays_unit_norm(tiny_resnet):
    sae = _sae(tiny_resnet)
    x = torch.randn(50, sae.info.channels)
    codes = sae.encode(x)
    pre = torch.relu(sae.pre_activations(x))
    assert ((codes > 0).sum(1) <= 8).all() and ((codes > 0).sum(1) == torch.minimum((pre > 0).sum(1),
                                                                                   torch.tensor(8))).all()
    kept = codes > 0
    assert torch.equal(codes[kept], pre[kept])                          # kept values are the ReLU'd ones
    assert (pre.masked_fill(kept, float("inf")).min(1).values >= 0).all()
    smallest_kept = codes.masked_fill(~kept, float("inf")).min(1).values
    largest_dropped = pre.masked_fill(kept, float("-inf")).max(1).values
    assert (smallest_kept >= largest_dropped).all()
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(96))
    assert sae(x).shape == x.shape


def test_the_file_round_trip_and_what_it_refuses(tiny_resnet, tmp_path):
    sae = _sae(tiny_resnet)
    sae.info.quality = {"fvu": 0.1}
    path = sae.save(tmp_path / "a.sae.safetensors")
    back = SAE.load(path)
    assert back.info == sae.info
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), sae.state_dict().values()))
    sae.save(path)                                                      # an SAE file may be replaced
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SAEError, match="not an SAE file; it is left as it is"):
        sae.save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(SAEError, match="is a folder"):
        sae.save(tmp_path)
    with pytest.raises(SAEError, match="is not an SAE file"):
        SAE.load(tmp_path / "notes.txt")
    with pytest.raises(SAEError, match="does not exist"):
        SAE.load(tmp_path / "missing.safetensors")
    from dataclasses import asdict

    from safetensors.torch import save_file

    save_file({"W_dec": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"),   # the wrong tensors
              metadata={"format": "mmneurons-sae/1", "info": json.dumps(asdict(back.info))})
    with pytest.raises(SAEError, match="damaged"):
        SAE.load(tmp_path / "bad.safetensors")


def test_another_model_is_refused(tiny_resnet, demo_model):
    sae = _sae(tiny_resnet)
    sae.check(tiny_resnet)
    with pytest.raises(SAEError, match="was trained on .* not on"):
        sae.check(demo_model)
    wide = _sae(tiny_resnet, layer="layer2.0")
    wide.info.channels = 999
    with pytest.raises(SAEError, match="reads 999 channels"):
        wide.check(tiny_resnet)
    with pytest.raises(ValueError, match="k=0"):
        SAE(SAEInfo("layer3.0", "x", None, features=4, k=0, channels=2))


def test_the_demo_ships_a_checked_sae(demo_model, tmp_path):
    assert shipped_sae_layers(demo_model) == ["layer4.0"]
    sae = shipped_sae(demo_model, "layer4.0")
    assert (sae.info.features, sae.info.k, sae.info.layer) == (768, 32, "layer4.0")
    assert sae.info.quality["fvu"] <= 0.15 and sae.info.quality["dead_fraction"] < 0.10   # the goals
    with pytest.raises(SAEError, match="ships no SAE of 'layer3.0'"):
        shipped_sae(demo_model, "layer3.0")
    changed = tmp_path / "sae.safetensors"
    changed.write_bytes(open(demo_model.meta["saes"]["layer4.0"]["path"], "rb").read() + b" ")
    tampered = copy.copy(demo_model)
    tampered.meta = {**demo_model.meta, "saes": {"layer4.0": {**demo_model.meta["saes"]["layer4.0"],
                                                                "path": str(changed)}}}
    with pytest.raises(SAEError, match="failed its checksum"):
        shipped_sae(tampered, "layer4.0")
