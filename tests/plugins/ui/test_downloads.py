import csv
import io
import json
import zipfile

import numpy as np
from PIL import Image

from mmneurons.captum import ZeroShotTarget  # noqa: F401 - results may hold targets
from mmneurons.results import UnitContributions
from mmneurons.plugins.ui.downloads import JSON_ARRAY_LIMIT, downloads_for, slug, table_csv
from mmneurons.results import FeatureVis, ProbeResult, load_result


def _probe_result():
    return ProbeResult(probe="modality", model_id="demo:shapes", target="layer4.0:3",
                       summary={"score": np.float32(1.5), "concepts": ["star", "moon"]},
                       tables={"ranking": [{"unit": "layer4.0:3", "score": 1.5, "tags": ["a", "b"]},
                                           {"unit": "layer4.0:4", "extra": "x"}]},
                       arrays={"small": np.arange(4), "big": np.zeros(JSON_ARRAY_LIMIT + 1)},
                       images=[Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")],
                       captions=["r", "b"], warnings=["careful"])


def test_every_probe_result_comes_as_json_csv_pngs_and_a_loadable_folder(tmp_path):
    result = _probe_result()
    items = {d.label: d for d in downloads_for(result, "modality-layer4.0:3")}
    assert set(items) == {"JSON", "CSV: ranking", "PNG (2 images, zip)", "result folder (zip)"}
    assert items["JSON"].filename == "modality-layer4.0_3.json"

    doc = json.loads(items["JSON"].data())
    assert doc["kind"] == "probe" and doc["summary"]["score"] == 1.5 and doc["warnings"] == ["careful"]
    assert doc["arrays"]["small"] == [0, 1, 2, 3]
    assert doc["arrays"]["big"]["shape"] == [JSON_ARRAY_LIMIT + 1]  # summarized, not dumped
    assert doc["images"][0]["image"].startswith("4x4 RGB")

    rows = list(csv.DictReader(io.StringIO(items["CSV: ranking"].data().decode())))
    assert rows[0] == {"unit": "layer4.0:3", "score": "1.5", "tags": '["a", "b"]', "extra": ""}
    assert rows[1]["extra"] == "x"

    with zipfile.ZipFile(io.BytesIO(items["PNG (2 images, zip)"].data())) as zf:
        names = sorted(zf.namelist())
        assert names == ["images-00.png", "images-01.png"]
        assert Image.open(zf.open("images-01.png")).getpixel((0, 0)) == (0, 0, 255)

    with zipfile.ZipFile(io.BytesIO(items["result folder (zip)"].data())) as zf:
        zf.extractall(tmp_path)
    loaded = load_result(tmp_path / "modality-layer4.0_3")
    assert loaded.tables == result.tables and loaded.summary["concepts"] == ["star", "moon"]


def test_a_single_image_is_a_png_and_a_table_method_is_a_csv():
    vis = FeatureVis(model_id="m", method="channel", target="layer4.0:1", image=Image.new("RGB", (8, 8)))
    labels = [d.label for d in downloads_for(vis, "v")]
    assert labels == ["JSON", "PNG", "result folder (zip)"]
    png = downloads_for(vis, "v")[1].data()
    assert Image.open(io.BytesIO(png)).size == (8, 8)

    order = np.arange(30)[::-1]
    contributions = UnitContributions(model_id="m", layer="layer4.0", target="label:star", channels=order,
                                      contributions=np.linspace(3.0, 0.0, 30), total=6.0, target_minus_baseline=6.1,
                                      images=1)
    items = {d.label: d for d in downloads_for(contributions, "c")}
    rows = list(csv.DictReader(io.StringIO(items["CSV: units"].data().decode())))
    assert [r["unit"] for r in rows] == [f"layer4.0:{c}" for c in order]  # every unit, not the 20 shown


def test_file_names_are_safe():
    assert slug("modality-layer4.0:3/../x y") == "modality-layer4.0_3_.._x_y"
    assert slug("::") == "result"
    assert table_csv([]) == b"\n"
