"""The app's Neuron, Layer and Search pages read from an atlas (AppTest, the demo model): stored
panels at once with nothing computed, the Layer page's table filtered and sorted, label search,
the quick atlas built on first start, and `mmneurons app --atlas`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from mmneurons.atlas import Atlas
from mmneurons.cli import main
from mmneurons.plugins.ui import app as router
from mmneurons.plugins.ui import atlas_panels, state

from .conftest import SMALL

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

@pytest.fixture
def app(demo_atlas, monkeypatch):
    monkeypatch.setenv(atlas_panels.ATLAS_ENV, str(demo_atlas))
    state.results().clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.query_params.update({"model": "demo:shapes", "layer": "layer4.0", "unit": "489"})
    at.run()
    return at


def page(at: AppTest, slug: str) -> AppTest:
    at.switch_page(str(router.page_file(slug))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_the_neuron_page_shows_the_stored_unit_and_computes_nothing(app, demo_atlas):
    page(app, "neuron")
    with Atlas.open(demo_atlas) as book:
        stored = book.unit("layer4.0:489").values
    shown = texts(app)
    label = stored["neuron_label"]["labels"]
    assert f"**Label:** {label['label']}" in shown and ", ".join(label["runners_up"]) in shown
    examples = {e["image"] for e in stored["examples"]["top"]}
    held = [i for i in label["evidence"] if i in examples]  # the evidence the atlas has thumbnails of
    captions = [c for element in app.get("image") for c in element.captions]
    assert held and held == [c for c in captions if c in held]  # shown as thumbnails, in order
    assert stored["rendered_words"]["units"]["words"] in shown
    assert f"top concept *{stored['modality']['ranking']['concept']}*" in shown
    assert f"from the atlas {demo_atlas}" in shown and "vis (" in shown and "steps=2" in shown
    assert len(state.results()) == 0                 # nothing was computed: no probe, no visualization
    assert any(b.label.startswith("Run ") for b in app.button)   # recompute stays one click away


def test_the_layer_page_lists_every_unit_and_filters_by_a_stored_column(app, demo_atlas):
    page(app, "layer")
    table = app.dataframe[0].value
    assert len(table) == 512 and "neuron_label.labels.label" in table.columns
    assert "vis.file" not in table.columns
    scores = table["modality.ranking.score"].dropna().tolist()
    assert scores == sorted(scores, reverse=True)    # sorted by multimodality, most first
    with Atlas.open(demo_atlas) as book:
        rows = book.layer("layer4.0").table()
    label = rows[7]["neuron_label.labels.label"]
    app.text_input(key="layer.atlas.filter").input(label).run()
    filtered = app.dataframe[0].value
    expected = {r["unit"] for r in rows if label.lower() in r["neuron_label.labels.label"].lower()}
    assert set(filtered["unit"]) == expected and "layer4.0:7" in expected
    app.text_input(key="layer.atlas.filter").input("").run()
    app.selectbox(key="layer.atlas.where").select("channel").run()
    app.text_input(key="layer.atlas.filter").input("511").run()      # one unit left: its card, no slider
    assert list(app.dataframe[0].value["unit"]) == ["layer4.0:511"] and not app.exception
    app.selectbox(key="layer.atlas.where").select("examples.max").run()
    app.text_input(key="layer.atlas.filter").input("1.5").run()
    assert set(app.dataframe[0].value["unit"]) == {r["unit"] for r in rows if r["examples.max"] >= 1.5}
    assert len(state.results()) == 0


def test_the_search_page_finds_units_by_label(app, demo_atlas):
    with Atlas.open(demo_atlas) as book:
        rows = book.layer("layer4.0").table()
        labels = [r["neuron_label.labels.label"] for r in rows]
        # a label whose matches (as a word prefix, in any unit's words) all fit on the page
        label = next(lb for lb in sorted(set(labels), key=lambda lb: (labels.count(lb), -len(lb), lb))
                     if len({h.unit for h in book.search(lb, limit=1000)}) <= 40)
    units = {r["unit"] for r in rows if r["neuron_label.labels.label"] == label}
    app.query_params["q"] = label
    page(app, "search")
    assert "In the atlas: labels and top words" in texts(app)
    prefix = "search.atlas.cards.open."
    opened = {b.key.removeprefix(prefix) for b in app.button if b.key and b.key.startswith(prefix)}
    assert units <= opened


def test_the_quick_atlas_is_built_on_first_start(monkeypatch, tmp_path):
    """A model whose provider declares a recipe gets its atlas built on the first page (here a
    smaller recipe than the demo's, to keep the test short), then read."""
    monkeypatch.delenv(atlas_panels.ATLAS_ENV)
    monkeypatch.setenv("MMNEURONS_CACHE_DIR", str(tmp_path))
    model = state._load_model("demo:shapes", "auto")
    monkeypatch.setitem(model.meta, "atlas", SMALL)
    state.results().clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.query_params.update({"model": "demo:shapes", "layer": "layer4.0"})
    at.run()
    page(at, "layer")
    folder = atlas_panels.own_atlas(model)
    assert folder is not None and folder.is_relative_to(tmp_path)
    with Atlas.open(folder) as book:
        assert [b.state for b in book.builds()] == ["done"]
        assert book.counts("layer4.0")["vis"] == 512
    assert len(at.dataframe[0].value) == 512
    page(at, "neuron")                       # read, not built again
    with Atlas.open(folder) as book:
        assert len(book.builds()) == 1


def test_app_opens_on_an_atlas_or_names_what_is_wrong(monkeypatch, demo_atlas, tmp_path):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: calls.append(env))
    runner = CliRunner()
    out = runner.invoke(main, ["app", "--atlas", str(demo_atlas), "--headless"])
    assert out.exit_code == 0, out.output
    assert calls[-1]["MMNEURONS_ATLAS"] == str(demo_atlas.resolve())
    assert calls[-1]["MMNEURONS_DEFAULT_MODEL"] == "demo:shapes"
    out = runner.invoke(main, ["app", "--atlas", str(tmp_path), "--headless"])
    assert out.exit_code == 1 and "is not an atlas" in out.output and len(calls) == 1


def test_a_damaged_atlas_is_said_and_the_page_goes_on(demo_atlas, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "atlas"
    shutil.copytree(demo_atlas, copy)
    with Atlas.open(copy) as book:
        book.file(book.unit("layer4.0:489").values["vis"]["file"]).unlink()   # a file removed by hand
    monkeypatch.setenv(atlas_panels.ATLAS_ENV, str(copy))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.query_params.update({"model": "demo:shapes", "layer": "layer4.0", "unit": "489"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("the atlas could not be read" in w.value for w in at.warning)
    assert any(b.label == "Render channel" for b in at.button)      # recompute is still there
