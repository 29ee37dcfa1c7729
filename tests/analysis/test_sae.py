"""Training an SAE by streaming images: it reconstructs what it was trained on, resumes to the same
weights, and stands in for its layer (the reconstruction edit) on ResNet maps and ViT tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmneurons.analysis.modality import derangement, relabeled_null
from mmneurons.analysis.sae import (SAETraining, feature_means, positions, reconstruction_edit, sae_quality,
                                    train_sae)
from mmneurons.capture import edited_layer
from mmneurons.images import ListSource
from mmneurons.sae import SAE, SAEError, SAEInfo

SETTINGS = dict(features=256, k=16, epochs=10, image_batch=16, batch_size=128, lr=3e-3, dead_after=500, aux_k=64)


@pytest.fixture(scope="module")
def noise_images():
    rng = np.random.default_rng(0)
    return ListSource([Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")) for _ in range(40)],
                      categories=["a", "b"] * 20)


def test_an_sae_reconstructs_its_training_activations(tiny_resnet, noise_images):
    sae = train_sae(tiny_resnet, noise_images, "layer3.0", SAETraining(**SETTINGS))
    quality = sae_quality(tiny_resnet, sae, noise_images)
    assert quality.fvu <= 0.15, quality                     # measured 0.10
    assert quality.l0 <= 16 and quality.positions == 40 * 16
    assert quality.dead_fraction < 0.25                     # measured 0.12
    assert sae.info.training["steps"] == 10 * 5 and sae.info.data == noise_images.describe()
    # the FVU by hand, from the positions themselves
    pixels = torch.stack([tiny_resnet.pixels(noise_images.load(i)) for i in range(40)])
    x = positions(tiny_resnet, pixels, "layer3.0")
    with torch.no_grad():
        fvu = float(((sae(x) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert fvu == pytest.approx(quality.fvu, rel=1e-3)


def test_training_resumes_to_the_same_weights(tiny_resnet, noise_images, tmp_path):
    settings = SAETraining(**{**SETTINGS, "epochs": 2})
    whole = train_sae(tiny_resnet, noise_images, "layer3.0", settings)
    checkpoint = tmp_path / "run.partial.pt"
    train_sae(tiny_resnet, noise_images, "layer3.0", settings, checkpoint=checkpoint, stop_after=3)  # killed
    assert checkpoint.exists()
    resumed = train_sae(tiny_resnet, noise_images, "layer3.0", settings, checkpoint=checkpoint)
    assert not checkpoint.exists()                                   # ours, finished: removed
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.info.training["steps"] == whole.info.training["steps"]
    train_sae(tiny_resnet, noise_images, "layer3.0", settings, checkpoint=checkpoint, stop_after=1)
    foreign = tmp_path / "notes.partial.pt"
    foreign.write_text("mine")
    with pytest.raises(SAEError, match="not a checkpoint of SAE training"):
        train_sae(tiny_resnet, noise_images, "layer3.0", settings, checkpoint=foreign)
    assert foreign.read_text() == "mine"
    with pytest.raises(SAEError, match="another training run"):
        train_sae(tiny_resnet, noise_images, "layer3.0", SAETraining(**{**SETTINGS, "k": 8}), checkpoint=checkpoint)


def _identity_sae(model, layer, negative: bool) -> SAE:
    """Features that copy the layer exactly: x = relu(x) - relu(-x) with both halves kept."""
    channels = model.layer_info(layer).channels
    eye = torch.eye(channels)
    encoder = torch.cat([eye, -eye], dim=1) if negative else eye
    features = encoder.shape[1]
    sae = SAE(SAEInfo(layer, model.model_id, None, features=features, k=features, channels=channels))
    with torch.no_grad():
        sae.W_enc.copy_(encoder)
        sae.W_dec.copy_(encoder.T)
    return sae


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_the_reconstruction_edit_stands_in_for_the_layer(kind, tiny_resnet, tiny_vit):
    model = tiny_resnet if kind == "resnet" else tiny_vit
    layer = "layer3.0" if kind == "resnet" else "transformer.resblocks.0"
    pixels = torch.rand(3, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    exact = _identity_sae(model, layer, negative=True)
    with torch.no_grad():
        plain = model.forward_visual(pixels)
        with edited_layer(model, layer, reconstruction_edit(exact)):
            copied = model.forward_visual(pixels)
        lossy = SAE(SAEInfo(layer, model.model_id, None, features=16, k=2, channels=exact.info.channels))
        with edited_layer(model, layer, reconstruction_edit(lossy)):
            changed = model.forward_visual(pixels)
    assert torch.allclose(plain, copied, atol=1e-5) and not torch.allclose(plain, changed, atol=1e-3)


def test_feature_means_are_each_images_mean_code(tiny_vit, noise_images):
    layer = "transformer.resblocks.1"
    sae = SAE(SAEInfo(layer, tiny_vit.model_id, None, features=40, k=4, channels=tiny_vit.layer_info(layer).channels))
    means, kept = feature_means(tiny_vit, sae, noise_images, batch=16)
    assert means.shape == (40, 40) and kept == list(range(40))
    pixels = torch.stack([tiny_vit.pixels(noise_images.load(i)) for i in (0, 1)])
    with torch.no_grad():
        codes = sae.encode(positions(tiny_vit, pixels, layer)).reshape(2, 16, 40).mean(1).numpy()
    assert np.allclose(means[:2], codes, atol=1e-6)


def test_a_relabeling_maps_no_concept_to_itself_and_breaks_agreement():
    rng = np.random.default_rng(0)
    for n in (2, 3, 12):
        order = derangement(n, rng)
        assert sorted(order) == list(range(n)) and not (order == np.arange(n)).any()
    table = np.zeros((3, 4, 2))
    table[:, 1, 0] = 5.0                         # unit 0: concept 1 in every form, nothing else
    table[0, 2, 1], table[1, 2, 1], table[2, 3, 1] = 5.0, 5.0, 5.0   # unit 1: the forms disagree
    assert relabeled_null(table, 1.5, n=30) == [0] * 30  # concept 1 is renamed in forms 2 and 3
