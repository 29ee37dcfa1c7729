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


# -- features as a layer ---------------------------------------------------------------------------
LAYERS = {"resnet": "layer3.0", "vit": "transformer.resblocks.0"}  # a ViT block whose tokens reach the output


@pytest.fixture(scope="module", params=["resnet", "vit"])
def with_features(request, tiny_resnet, tiny_vit):
    """A copy of a tiny model with an SAE of 48 features (k 6) as ``<layer>.sae``."""
    from mmneurons.sae import attach_sae

    from mmneurons.analysis.sae import input_statistics
    from mmneurons.images import ListSource
    from mmneurons.images import to_pil

    model = copy.deepcopy(tiny_resnet if request.param == "resnet" else tiny_vit)
    sae = _sae(model, layer=LAYERS[request.param], features=48, k=6)
    images = ListSource([to_pil(p) for p in _pixels(model, n=8, seed=9)])
    mean, scale = input_statistics(model, images, sae.info.layer, 8)
    sae.mean.copy_(mean)  # inputs at the layer's own scale, so a random SAE's features vary
    sae.scale.copy_(scale)
    name = attach_sae(model, sae)
    return model, sae, name


def _pixels(model, n=3, seed=0):
    return torch.rand(n, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(seed))


def test_an_attached_sae_is_a_layer_of_its_features(with_features):
    from mmneurons.activations import capture_layers
    from mmneurons.analysis.sae import positions
    from mmneurons.units import Unit

    model, sae, name = with_features
    info = model.layer_info(name)
    parent = model.layer_info(sae.info.layer)
    assert name == f"{sae.info.layer}.sae" and info.shape == (48,) + parent.shape[1:]
    assert name in [layer.name for layer in model.layers()] and model.default_layer() != name
    Unit.parse(f"{name}:47").validate(model)
    pixels = _pixels(model)
    with torch.no_grad():
        codes = capture_layers(model, pixels, [name])[name]
        expected = sae.encode(positions(model, pixels, sae.info.layer))
    assert torch.allclose(codes.permute(0, 2, 3, 1).reshape(-1, 48), expected, atol=1e-5)
    assert ((codes > 0).sum(1) <= 6).all() and (codes > 0).any()


def test_removing_a_feature_removes_its_decoder_contribution(with_features):
    from mmneurons.activations import capture_layers, edited_layer
    from mmneurons.analysis.ablation import replace_channels

    model, sae, name = with_features
    pixels = _pixels(model, seed=1)
    with torch.no_grad():
        plain = capture_layers(model, pixels, [name, sae.info.layer], stop=False)
        feature = int(plain[name].sum(dim=(0, 2, 3)).argmax())             # the feature most active here
        with edited_layer(model, name, replace_channels([feature])):
            edited = capture_layers(model, pixels, [sae.info.layer, name], stop=False)
            after = model.forward_visual(pixels)
        before = model.forward_visual(pixels)
    contribution = plain[name][:, feature][:, None] * (sae.W_dec[feature] * sae.scale)[None, :, None, None]
    assert torch.allclose(edited[sae.info.layer], plain[sae.info.layer] - contribution, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-6)
    with torch.no_grad():
        again = model.forward_visual(pixels)
    assert torch.equal(before, again)                                      # nothing stays edited


def test_a_features_gradient_is_its_decoder_direction_of_the_layers(with_features):
    from mmneurons.activations import layer_gradient

    model, sae, name = with_features
    pixels = _pixels(model, n=2, seed=2)
    direction = torch.randn(model.forward_visual(pixels).shape[1], generator=torch.Generator().manual_seed(3))
    grad_layer = layer_gradient(model, pixels, sae.info.layer, lambda e: e @ direction)      # [B, C, H, W]
    grad_features = layer_gradient(model, pixels, name, lambda e: e @ direction)             # [B, F, H, W]
    expected = torch.einsum("bchw,fc->bfhw", grad_layer, sae.W_dec.detach()) * sae.scale
    assert torch.allclose(grad_features, expected, atol=1e-5)


@pytest.mark.parametrize("method", ["channel", "neuron", "negative", "diversity"])
def test_every_unit_visualizer_takes_a_feature(with_features, method):
    """Each visualizer moves the feature's encoder pre-activation (its objective) from the gray
    image's: up, or down for ``negative``."""
    from mmneurons.analysis.sae import positions
    from mmneurons.registry import get_registry

    model, sae, name = with_features
    results = get_registry().get("mmneurons_visualizers", method).visualize(model, [f"{name}:5"], {"steps": 24})
    assert results and all(r.of.lstrip("-").startswith(f"{name}:5") for r in results)

    def pre(image) -> float:
        x = positions(model, model.pixels(image)[None], sae.info.layer)
        with torch.no_grad():
            return float(sae.pre_activations(x)[:, 5].mean())

    from PIL import Image

    gray = pre(Image.new("RGB", (model.image_size, model.image_size), (128, 128, 128)))
    reached = pre(results[0].image)
    assert (reached < gray) if method == "negative" else (reached > gray), (reached, gray)


def test_every_unit_probe_takes_a_feature(with_features):
    from mmneurons.images import ListSource, to_pil
    from mmneurons.registry import get_registry

    model, sae, name = with_features
    pixels = _pixels(model, n=16, seed=4)
    ids = [f"{c}/{form}/{i}" for i, (c, form) in enumerate((c, f) for c in "ab" for f in ("photo", "drawing")
                                                           for _ in range(4))]
    images = ListSource([to_pil(p) for p in pixels], ids=ids, categories=[i.split("/")[0] for i in ids])
    params = {"rendered_words": {"n_words": 40}, "neuron_label": {"concepts": "a,b,cat"},
              "association_audit": {"vocabulary": "a,b,cat"}, "dataset_examples": {"k": 3}}
    probes = [p for p in get_registry().probes() if p.accepts("unit")]
    assert {"dataset_examples", "rendered_words", "modality", "neuron_label", "ablation", "activation_by_category",
            "association_audit"} <= {p.name for p in probes}
    for probe in probes:
        source = None if probe.source == "words" else images
        result = probe.run(model, f"{name}:5", source, params.get(probe.name, {}))
        summary = result.summary
        assert str(summary.get("unit", summary.get("units"))) == f"{name}:5", (probe.name, summary)


def test_the_users_sae_files_join_the_model_they_were_trained_on(demo_model, tiny_resnet, tmp_path, monkeypatch):
    from mmneurons.models import load_model
    from mmneurons.sae import SAE_ENV

    sha = demo_model.meta["sha256"]
    ours = SAE(SAEInfo("layer3.0", "demo:shapes", sha, features=16, k=2, channels=256)).save(
        tmp_path / "l3.safetensors")
    again = SAE(SAEInfo("layer4.0", "demo:shapes", sha, features=8, k=2, channels=512)).save(
        tmp_path / "my-l4.sae.safetensors")
    other = _sae(tiny_resnet).save(tmp_path / "tiny.safetensors")             # another model's: left out
    monkeypatch.setenv(SAE_ENV, ":".join(map(str, (ours, again, other))))
    names = [layer.name for layer in load_model("demo:shapes").layers()]
    assert {"layer3.0.sae", "layer4.0.sae", "layer4.0.my_l4"} <= set(names)     # the shipped one keeps its name
    assert not any(name.startswith("layer3.0.") and name != "layer3.0.sae" for name in names)


def test_a_third_party_ships_an_sae_for_a_model_it_does_not_provide(demo_model, tmp_path, monkeypatch):
    import types

    from mmneurons.hookspecs import hookimpl
    from mmneurons.kinds import SAESource
    from mmneurons.models import load_model
    from mmneurons.registry import PluginRegistry
    from mmneurons.sae import SAE_ENV

    monkeypatch.delenv(SAE_ENV, raising=False)
    path = SAE(SAEInfo("layer4.0", "demo:shapes", demo_model.meta["sha256"], features=8, k=2, channels=512)).save(
        tmp_path / "theirs.safetensors")

    class Theirs(SAESource):
        name = "their_saes"
        description = "an SAE for the demo model, from elsewhere"

        def files(self, model):
            return [path, tmp_path / "damaged.safetensors"] if model.model_id == "demo:shapes" else []

    (tmp_path / "damaged.safetensors").write_text("not an SAE")
    plugin = types.ModuleType("their_plugin")
    plugin.mmneurons_saes = hookimpl(lambda: [Theirs()])
    registry = PluginRegistry(entry_points=False, env={})
    registry.register(plugin, name="their_plugin")
    with pytest.warns(UserWarning, match="damaged.safetensors is not an SAE file"):
        model = load_model("demo:shapes", registry=registry)
    names = [layer.name for layer in model.layers()]
    assert "layer4.0.sae" in names and "layer4.0.their_saes" in names       # the demo's keeps its name
    assert model.layer_info("layer4.0.their_saes").channels == 8
    monkeypatch.setenv(SAE_ENV, str(tmp_path / "missing.safetensors"))
    with pytest.raises(SAEError, match="MMNEURONS_SAE: SAE file .* does not exist"), pytest.warns(UserWarning):
        load_model("demo:shapes", registry=registry)
