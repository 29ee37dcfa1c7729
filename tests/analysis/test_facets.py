"""Facet probes: trained on the demo model's forms, stored as data, refused on another model."""

import json

import numpy as np
import pytest
import torch

from mmneurons.analysis.facets import Facet, FacetError, facet_labels, train_facet


@pytest.fixture(scope="module")
def text_facet(demo_model):
    from mmneurons.registry import get_registry

    images = get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=4, seed=5)
    return train_facet(demo_model, images, "text", "layer3.0"), images


def test_a_text_facet_separates_words_from_shapes(text_facet, demo_model):
    facet, images = text_facet
    assert facet.labels_from == "form" and (facet.facet_images, facet.generic_images) == (48, 96)
    assert facet.accuracy >= 0.9
    pixels = torch.stack([demo_model.pixels(images.load(i)) for i in range(len(images))])
    scores = facet.score(demo_model, pixels)
    forms = np.array([images.record(i).meta["form"] for i in range(len(images))])
    assert (scores[forms == "text"] > 0).mean() >= 0.9 and (scores[forms != "text"] < 0).mean() >= 0.9


def test_a_facet_file_round_trips_and_is_data(text_facet, tmp_path):
    facet, _ = text_facet
    path = facet.save(tmp_path / "text.facet.json")
    data = json.loads(path.read_text())
    assert data["format"] == "mmneurons-facet/1" and data["layer"] == "layer3.0" and len(data["coef"]) == 256
    again = Facet.load(path)
    assert again.accuracy == facet.accuracy and np.allclose(again.coef, facet.coef)
    w = again.objective_weights()
    assert np.all(w >= 0) and np.abs(w).mean() == pytest.approx(1.0)
    assert np.abs(again.objective_weights(negative=True)).mean() == pytest.approx(1.0)


def test_bad_facet_files_and_models_are_refused(text_facet, tmp_path, tiny_resnet):
    facet, _ = text_facet
    with pytest.raises(FacetError, match="does not exist"):
        Facet.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(FacetError, match="not a facet file"):
        Facet.load(tmp_path / "other.json")
    damaged = facet.to_dict()
    damaged["scale"] = damaged["scale"][:3]
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    with pytest.raises(FacetError, match="damaged"):
        Facet.load(tmp_path / "damaged.json")
    with pytest.raises(FacetError, match="trained on demo:shapes"):
        facet.check(tiny_resnet)
    # a facet replaces a facet file, never another file
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FacetError, match="not a facet file; it is left as it is"):
        facet.save(notes)
    assert notes.read_text() == "mine"
    facet.save(tmp_path / "f.json")
    assert Facet.load(facet.save(tmp_path / "f.json")).name == "text"


def test_labels_come_from_categories_or_forms(text_facet):
    _, images = text_facet
    y, by = facet_labels(images, "star")
    assert by == "category" and (y == 1).sum() == 12 and (y == 0).sum() == 132
    y, by = facet_labels(images, "text", generic=["photo"])
    assert by == "form" and (y == -1).sum() == 48
    with pytest.raises(Exception, match="no image"):
        facet_labels(images, "face")
