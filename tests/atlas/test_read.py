"""Reading an atlas: units, layer tables (rows and record arrays), search, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.atlas import Atlas
from mmneurons.errors import LayerError, UnitError


def test_a_unit_holds_what_each_stage_stored(reference_atlas):
    with Atlas.open(reference_atlas) as book:
        unit = book.unit("layer1.0:7")
        assert unit.name == "layer1.0:7" and sorted(unit.values) == sorted(unit.stages)
        label = unit.values["neuron_label"]["labels"]
        assert isinstance(label["label"], str) and isinstance(label["score"], float)
        assert unit.values["rendered_words"]["units"]["best"] in unit.values["rendered_words"]["units"]["words"]
        assert unit.stages["vis"].params["steps"] == 4 and unit.stages["vis"].finished is not None


def test_the_layer_table_as_rows_and_as_a_record_array(reference_atlas):
    with Atlas.open(reference_atlas) as book:
        layer = book.layer("layer2.0")
        rows = layer.table()
        records = layer.records()
    assert len(rows) == len(records) == 128
    assert list(rows[0])[:2] == ["unit", "channel"] and rows[5]["unit"] == "layer2.0:5"
    assert records.dtype["neuron_label.labels.score"] == np.float64
    assert records.dtype["modality.ranking.multimodal"] == np.bool_
    assert records["neuron_label.labels.label"][9] == rows[9]["neuron_label.labels.label"]
    scores = records["modality.ranking.score"]     # units whose modalities disagree: NaN, None in rows
    assert [np.isnan(s) for s in scores] == [r["modality.ranking.score"] is None for r in rows]
    order = np.argsort(-records["examples.max"])
    assert rows[order[0]]["examples.max"] == max(r["examples.max"] for r in rows)


def test_search_finds_units_by_label_and_by_top_word(reference_atlas):
    with Atlas.open(reference_atlas) as book:
        rows = book.layer("layer1.0").table()
        label = rows[3]["neuron_label.labels.label"]
        word = rows[4]["rendered_words.units.best"]
        by_label = {h.unit for h in book.search(label, layer="layer1.0", limit=1000) if h.stage == "neuron_label"}
        words = {r["unit"]: " ".join((r["neuron_label.labels.label"], r["neuron_label.labels.labels"],
                                      r["neuron_label.labels.runner_up"])).replace(",", " ").split() for r in rows}
        assert by_label == {u for u, ws in words.items() if any(w.startswith(label) for w in ws)}  # prefixes
        assert "layer1.0:3" in by_label
        by_word = {h.unit for h in book.search(word, layer="layer1.0", limit=1000) if h.stage == "rendered_words"}
        assert "layer1.0:4" in by_word
        assert book.search("") == [] and book.search("zzzzqqq") == []
        assert book.search('"unbalanced (quotes') == []          # user text is never query syntax


def test_unknown_layers_and_units_are_named(reference_atlas):
    with Atlas.open(reference_atlas) as book:
        with pytest.raises(LayerError, match="holds no layer 'layer3.0'.*layer1.0, layer2.0"):
            book.layer("layer3.0")
        with pytest.raises(UnitError, match="layer1.0 has 64 channels"):
            book.unit("layer1.0:64")
        with pytest.raises(UnitError, match="LAYER:CHANNEL"):
            book.unit("layer1.0")
