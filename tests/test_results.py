"""Results save to a folder and load back; saves are atomic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from mmneurons.results import Result, TopKActivations, load_result
from mmneurons.units import Direction, Unit


@dataclass
class Sample(Result):
    kind = "sample"
    unit: Unit = Unit("layer4", 3, (1, 2))
    direction: Direction | None = None
    image: Image.Image | None = None
    frames: list = field(default_factory=list)
    table: dict = field(default_factory=dict)
    curve: np.ndarray | None = None


def test_round_trip_of_every_field_type(tmp_path):
    img = Image.new("RGB", (5, 4), (1, 2, 3))
    sample = Sample(unit=Unit("layer4", 3, (1, 2)), direction=Direction("layer4", np.arange(3.0), "d"),
                    image=img, frames=[img, Image.new("RGB", (2, 2), (9, 9, 9))],
                    table={"word": ["a", "b"], "score": [0.5, 0.25]}, curve=np.linspace(0, 1, 7),
                    warnings=["careful"])
    path = sample.save(tmp_path / "out")
    assert {p.name for p in path.iterdir()} >= {"result.json", "arrays.npz", "image.png", "frames.0.png"}
    back = Sample.load(path)
    assert back.unit == sample.unit and back.warnings == ["careful"] and back.table == sample.table
    assert np.array_equal(back.direction.vector, np.arange(3.0)) and back.direction.label == "d"
    assert back.image.getpixel((0, 0)) == (1, 2, 3) and back.frames[1].size == (2, 2)
    assert np.allclose(back.curve, sample.curve)


def test_topk_round_trip(tmp_path):
    res = TopKActivations(model_id="m", layer="layer2", k=2, top_values=np.ones((3, 2), np.float32),
                          top_indices=np.zeros((3, 2), np.int64), image_ids=["a", "b"], categories=[None, "x"],
                          n_images=2, skipped=[["c", "empty"]])
    back = load_result(res.save(tmp_path / "r"))
    assert isinstance(back, TopKActivations) and back.top(0) == [("a", 1.0), ("a", 1.0)]
    assert back.skipped == [["c", "empty"]] and back.categories == [None, "x"]


def test_results_saved_before_a_type_moved_still_load(tmp_path):
    path = TopKActivations(model_id="m", layer="layer2", k=1, top_values=np.ones((2, 1), np.float32),
                           top_indices=np.zeros((2, 1), np.int64), image_ids=["a"], n_images=1).save(tmp_path / "r")
    doc = json.loads((path / "result.json").read_text())
    assert doc["type"] == "mmneurons.results:TopKActivations"
    doc["type"] = "mmneurons.activations:TopKActivations"  # where round 1 defined it
    (path / "result.json").write_text(json.dumps(doc))
    assert isinstance(load_result(path), TopKActivations)


def test_an_interrupted_save_keeps_the_old_result(tmp_path, monkeypatch):
    path = Sample(table={"v": 1}).save(tmp_path / "out")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        Sample(table={"v": 2}, curve=np.zeros(2)).save(path)
    assert Sample.load(path).table == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


def test_loading_the_wrong_thing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved result"):
        load_result(tmp_path)
    path = Sample().save(tmp_path / "s")
    with pytest.raises(TypeError, match="holds a Sample, not a TopKActivations"):
        TopKActivations.load(path)


def test_result_json_is_strict_json_with_non_finite_numbers_as_null(tmp_path):
    import json

    from mmneurons.results import ProbeResult

    scores = np.array([1.5, -np.inf, np.nan])
    result = ProbeResult(probe="p", summary={"score": float("-inf"), "z": np.float32("nan"), "ok": 2.5},
                         tables={"ranking": [{"unit": "l:0", "score": float("inf")}]}, arrays={"score": scores})
    result.save(tmp_path / "r")

    def refuse(constant):  # what a browser's JSON.parse does with NaN / Infinity
        raise ValueError(f"not JSON: {constant}")

    doc = json.loads((tmp_path / "r" / "result.json").read_text(), parse_constant=refuse)
    assert doc["fields"]["summary"] == {"score": None, "z": None, "ok": 2.5}
    assert doc["fields"]["tables"]["ranking"] == [{"unit": "l:0", "score": None}]
    back = load_result(tmp_path / "r")
    assert back.summary["score"] is None and np.array_equal(back.arrays["score"], scores, equal_nan=True)


@pytest.mark.parametrize("saved_type", ["os:system", "subprocess:Popen", "mmneurons.results:Path", 42])
def test_a_result_folder_names_no_code_to_run(tmp_path, saved_type):
    import json

    from mmneurons.errors import ResultTypeError
    from mmneurons.results import ProbeResult

    marker = tmp_path / "ran"
    path = ProbeResult(probe="p", summary={"n": 1}).save(tmp_path / "r")
    doc = json.loads((path / "result.json").read_text())
    doc["type"] = saved_type
    doc["fields"] = {"command": f"touch {marker}"} if saved_type == "os:system" else {}
    (path / "result.json").write_text(json.dumps(doc))
    with pytest.raises(ResultTypeError, match="which no installed code declares; result folders are data"):
        load_result(path)
    assert not marker.exists()


def test_a_nested_dataclass_is_built_only_from_known_types(tmp_path):
    import json

    from mmneurons.errors import ResultTypeError
    from mmneurons.results import ProbeResult

    marker = tmp_path / "ran"
    path = ProbeResult(probe="p").save(tmp_path / "r")
    doc = json.loads((path / "result.json").read_text())
    doc["fields"]["summary"] = {"x": {"$dataclass": "os:system", "fields": {"command": f"touch {marker}"}}}
    (path / "result.json").write_text(json.dumps(doc))
    with pytest.raises(ResultTypeError, match="'os:system'"):
        load_result(path)
    with pytest.raises(ResultTypeError, match="'os:system'"):  # not "holds a ProbeResult, not a ProbeResult"
        ProbeResult.load(path)
    assert not marker.exists()


def test_plugin_result_types_are_read_back_by_declaration(registry, tmp_path):
    from mmneurons.results import UnitContributions

    saved = UnitContributions(model_id="m", layer="l", target="t", channels=np.arange(3),
                              contributions=np.ones(3), images=1).save(tmp_path / "u")
    back = load_result(saved)  # declared by the unit_contributions probe's result_types
    assert isinstance(back, UnitContributions) and back.table()[0] == {"unit": "l:0", "contribution": 1.0}
