"""Every page of the app under Streamlit's AppTest, on the embedded demo model: no exception, the
widgets generated from plugin params, URL state, results drawn and cached, and a failing plugin
shown as an error that names it while the rest of the page keeps working."""

from __future__ import annotations

import io
import types
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mmneurons.hookspecs import hookimpl
from mmneurons.kinds import Attributor, Probe, Renderer
from mmneurons.plugins.ui import app as router
from mmneurons.plugins.ui import state
from mmneurons.registry import PluginRegistry, get_registry, reset_registry
from mmneurons.results import ProbeResult

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def page_path(slug: str) -> str:
    return str(router.page_file(slug))


@pytest.fixture
def app():
    """A fresh app session with an empty result cache (models stay loaded between tests)."""
    state.results().clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.query_params["model"] = "demo:shapes"
    return at


def open_page(at: AppTest, slug: str) -> AppTest:
    if not at._tree:  # the first run registers the pages
        at.run()
    at.switch_page(page_path(slug)).run()
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[0]


def widget(at: AppTest, key: str):
    """The widget with ``key`` of whichever type it is."""
    for kind in ("number_input", "text_input", "checkbox", "selectbox"):
        found = [w for w in getattr(at, kind) if w.key == key]
        if found:
            return found[0]
    raise AssertionError(f"no widget with key {key!r}")


@pytest.mark.parametrize("slug", [slug for slug, _, _ in router.PAGES])
def test_every_page_runs_cleanly(app, slug):
    open_page(app, slug)
    ok(app)
    title = dict((s, t) for s, t, _ in router.PAGES)[slug]
    assert app.title[0].value == title


def test_neuron_page_has_a_widget_for_every_param_of_every_unit_plugin(app):
    app.query_params.update({"layer": "layer4.0", "unit": "7"})  # a unit asked for: every plugin waits for a click
    open_page(app, "neuron")
    ok(app)
    registry = get_registry()
    model = state._load_model("demo:shapes", "auto")
    checked = 0
    for kind, objects in (("vis", registry.visualizers()), ("probe", registry.probes())):
        for obj in objects:
            if not obj.accepts("unit") or not obj.supports(model):
                continue
            assert any(b.label.endswith(f" {obj.name}") for b in app.button), obj.name
            for param in obj.params:
                w = widget(app, f"neuron.{kind}.{obj.name}.{param.name}")
                if param.default is not None:
                    assert w.value == param.default, (obj.name, param.name, w.value)
                checked += 1
    assert checked > 40


def test_url_sets_the_unit_and_follows_the_pickers(app):
    app.query_params.update({"layer": "layer4.0", "unit": "489"})
    open_page(app, "neuron")
    ok(app)
    assert app.session_state["w.unit"] == 489
    assert app.subheader[0].value == "layer4.0:489"
    app.number_input(key="w.unit").set_value(7).run()
    assert app.query_params["unit"] == ["7"] or app.query_params["unit"] == "7"
    assert app.subheader[0].value == "layer4.0:7"


def test_a_bad_unit_in_the_url_is_reported_not_raised(app):
    app.query_params.update({"layer": "layer4.0", "unit": "99999"})
    app.run()  # the Neuron page is the default one
    assert not app.exception
    assert any("does not exist" in w.value for w in app.sidebar.warning)
    assert app.session_state["w.unit"] == 0


def test_probe_result_is_drawn_with_downloads_and_cached(app):
    app.query_params.update({"layer": "layer4.0", "unit": "489"})
    open_page(app, "neuron")
    button(app, "Run modality").click().run()
    ok(app)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["top concept"] == "star" and metrics["multimodal"] == "True"
    labels = [d.label for d in app.get("download_button")]
    assert {"JSON", "CSV: ranking", "CSV: unit", "PNG", "result folder (zip)"} <= set(labels)
    # the button is gone: the result comes from the cache, for this and any other session
    assert "Run modality" not in [b.label for b in app.button]
    other = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    other.query_params.update({"model": "demo:shapes", "layer": "layer4.0", "unit": "489"})
    other.run()
    assert "Run modality" not in [b.label for b in other.button]
    assert any(m.label == "top concept" for m in other.metric)


def test_feature_visualization_renders_from_the_page(app):
    app.query_params.update({"layer": "layer4.0", "unit": "489"})
    open_page(app, "neuron")
    widget(app, "neuron.vis.channel.steps").set_value(32)
    app.run()
    button(app, "Render channel").click().run()
    ok(app)
    assert any(c.value.startswith("activation ") for c in app.caption)
    # the render's path check against the unit's top images in the page's source, on a click
    button(app, "Check the render's path").click().run()
    ok(app)
    [check] = [c.value for c in app.caption if c.value.startswith("path check ")]
    score = float(check.split()[2])
    assert 0.0 <= score <= 1.0 and "layer3.0" in check
    assert bool([w for w in app.warning if "path score" in w.value]) == (score < 0.5)


def test_unknown_or_offline_model_is_a_message_not_a_trace(app):
    app.query_params["model"] = "openclip:RN50@openai"
    open_page(app, "neuron")
    assert not app.exception
    message = app.error[0].value
    assert "Could not load model **openclip:RN50@openai**" in message
    assert "demo:shapes" in message  # the offline message points at the embedded model
    other = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    other.query_params["model"] = "nosuchprovider:x"
    other.run()
    assert not other.exception and "unknown model provider 'nosuchprovider'" in other.error[0].value


def test_layer_grid_sorts_by_multimodality_and_opens_a_unit(app):
    app.query_params["layer"] = "layer4.0"
    open_page(app, "layer")
    button(app, "Run modality").click().run()
    ok(app)
    cards = [m.value for m in app.markdown if m.value.startswith("**layer4.0:")]
    assert len(cards) == 24
    assert cards[0] == "**layer4.0:257**"  # the demo's highest multimodality score (a "ring" unit)
    widget(app, "layer.thumbs.vis.channel.steps").set_value(8)
    app.run()
    button(app, "Render thumbnails for 24 units").click().run()  # one batched call for the 24 shown
    ok(app)
    rendered = {v[0].target for v in state.results().values() if isinstance(v, list) and v[0].kind == "feature_vis"}
    assert rendered == {card.strip("*") for card in cards}
    assert not [b for b in app.button if b.label.startswith("Render thumbnails")]
    button(app, "Open unit").click().run()
    ok(app)
    assert app.title[0].value == "Neuron"
    assert app.session_state["w.unit"] == 257


def test_search_ranks_units_for_a_prompt_from_the_url_without_a_click(app):
    app.query_params["q"] = "star"
    open_page(app, "search")
    ok(app)
    assert "Search with neuron_search" not in [b.label for b in app.button]  # ?q= ran the search
    assert len([b for b in app.button if b.label == "Open unit"]) == 12
    assert app.dataframe, "the ranking table is shown"


def test_attribution_of_a_unit_and_of_a_class(app):
    open_page(app, "attribution")
    widget(app, "attr.ig.steps").set_value(8)
    app.run()
    button(app, "Attribute with ig").click().run()
    ok(app)
    assert any("convergence delta" in c.value for c in app.caption)
    app.radio(key="attr.kind").set_value("class label").run()
    ok(app)
    assert app.selectbox(key="attr.label").value == "circle"  # the demo source's first concept
    widget(app, "attr.probe.unit_contributions.steps").set_value(4)
    app.run()
    button(app, "Run unit_contributions").click().run()
    ok(app)
    assert any(m.label == "sum over units" for m in app.metric)


def _png(color=(255, 0, 0), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_are_validated(app):
    open_page(app, "attribution")
    def upload(name, data):
        app.file_uploader(key="attr.image.upload").set_value((name, data, "image/png")).run()

    upload("broken.png", b"this is not an image")
    assert not app.exception
    assert "Cannot use the upload: broken.png: not an image" in app.error[0].value
    upload("huge.png", b"\0" * (21 * 2**20))
    assert app.error[0].value == "huge.png: 21.0 MB is over the 20 MB limit"
    upload("red.png", _png())
    ok(app)
    widget(app, "attr.saliency.abs")  # the panels are there for the uploaded image
    button(app, "Attribute with saliency").click().run()
    ok(app)
    maps = [r for value in state.results().values() for r in (value if isinstance(value, list) else [value])
            if getattr(r, "method", "") == "saliency"]
    assert [m.image_id for m in maps] == ["red.png"]
    assert maps[0].image.getpixel((32, 32)) == (255, 0, 0)  # the upload, at the model's input size


def test_typographic_attack_flips_the_prediction(app):
    open_page(app, "typographic")
    ok(app)
    # demo image 0 is a red circle; the default text is the second label, "square"
    assert any(m.value == "Prediction: **circle** → **square**" for m in app.markdown)
    assert {"PNG: attacked image", "CSV: predictions"} <= {d.label for d in app.get("download_button")}
    app.text_input(key="typo.text").set_value("").run()
    assert any("(unchanged)" in m.value for m in app.markdown)
    app.text_input(key="typo.color").set_value("purple-ish").run()
    assert not app.exception


def test_the_associations_page_audits_the_concepts_given(app):
    open_page(app, "associations")
    ok(app)
    app.text_input(key="assoc.concepts").set_value("ring, circle, arrow").run()
    widget(app, "assoc.probe.association_audit.words").set_value(0)
    app.run()
    button(app, "Run association_audit").click().run()
    ok(app)
    [result] = [r for r in state.results().values() if getattr(r, "probe", "") == "association_audit"]
    assert result.target == "ring,circle,arrow" and len(result.table("pairs")) == 3
    assert any("not why" in c.value for c in app.caption)  # the page says what an audit cannot show


def test_an_sae_feature_is_a_unit_of_the_neuron_page(app):
    app.query_params.update({"layer": "layer4.0.sae", "unit": "481"})
    open_page(app, "neuron")
    ok(app)
    assert app.subheader[0].value.startswith("layer4.0.sae:481")
    button(app, "Run modality").click().run()
    ok(app)
    [result] = [r for r in state.results().values() if getattr(r, "probe", "") == "modality"]
    assert result.summary["unit"] == "layer4.0.sae:481" and result.summary["top_concept"] == "ring"


# -- a plugin that fails everywhere it can ------------------------------------------------------
class ExplodingProbe(Probe):
    name = "explodes"
    description = "raises when run"
    source = "none"

    def run(self, model, target, source, params, progress):
        raise RuntimeError("boom from the probe")


class FineProbe(Probe):
    name = "fine"
    description = "works, but its renderer raises"
    source = "none"

    def run(self, model, target, source, params, progress):
        return ProbeResult(probe=self.name, model_id=model.model_id, target=str(target), summary={"ok": 1},
                           warnings=["mind this"])


class BrokenRenderer(Renderer):
    name = "broken_renderer"
    result_kind = "probe:fine"

    def render(self, result, st):
        raise ValueError("boom from the renderer")


class PickyAttributor(Attributor):
    name = "picky"

    def supports(self, model):
        raise RuntimeError("boom from supports")

    def attribute(self, model, images, target, params, progress):  # pragma: no cover - never offered
        raise AssertionError

    def captum(self, model, target):  # pragma: no cover
        raise AssertionError


def _broken_module() -> types.ModuleType:
    module = types.ModuleType("broken_ui")

    @hookimpl
    def mmneurons_probes():
        return [ExplodingProbe(), FineProbe()]

    @hookimpl
    def mmneurons_renderers():
        return [BrokenRenderer()]

    @hookimpl
    def mmneurons_attributors():
        return [PickyAttributor()]

    @hookimpl
    def mmneurons_visualizers():
        raise RuntimeError("boom from the hook")

    module.__dict__.update(mmneurons_probes=mmneurons_probes, mmneurons_renderers=mmneurons_renderers,
                           mmneurons_attributors=mmneurons_attributors, mmneurons_visualizers=mmneurons_visualizers)
    return module


@pytest.fixture
def broken_app(app):
    registry = PluginRegistry(entry_points=False)
    registry.register(_broken_module(), name="broken_ui")
    reset_registry(registry)
    yield app
    reset_registry(None)


def test_a_failing_plugin_is_named_and_the_page_goes_on(broken_app):
    app = broken_app
    app.query_params.update({"layer": "layer4.0", "unit": "7"})
    open_page(app, "neuron")
    assert not app.exception
    button(app, "Run explodes").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("probe 'explodes' (plugin 'broken_ui')" in e and "boom from the probe" in e for e in errors), errors
    # the built-in plugins on the same page still work
    assert "Render channel" in [b.label for b in app.button]
    button(app, "Run fine").click().run()
    errors = [e.value for e in app.error]
    assert any("renderer 'broken_renderer' (plugin 'broken_ui') could not draw" in e for e in errors), errors
    assert "result folder (zip)" in [d.label for d in app.get("download_button")]  # downloads still offered
    assert "mind this" in [w.value for w in app.warning]  # the app shows a result's warnings itself
    button(app, "Run modality").click().run()
    assert any(m.label == "top concept" for m in app.metric)

    open_page(app, "attribution")
    assert not app.exception
    assert any("attributor 'picky' (plugin 'broken_ui')" in e.value for e in app.error)
    assert "Attribute with ig" in [b.label for b in app.button]

    open_page(app, "plugins")
    assert not app.exception
    assert any("plugin 'broken_ui'" in e.value and "boom from the hook" in e.value for e in app.error)
    assert any("broken_ui" in str(df.value) for df in app.dataframe)


def test_every_view_file_is_a_page():
    files = {p.stem for p in router.VIEWS.glob("*.py")}
    assert files == {slug for slug, _, _ in router.PAGES}


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory, tiny_vit):
    from mmneurons.plugins.openclip_models import save_checkpoint

    path = tmp_path_factory.mktemp("vit") / "tiny-vit.pt"
    save_checkpoint(tiny_vit.model, path, model_cfg=tiny_vit.meta["config"],
                    preprocess={"size": tiny_vit.image_size, "mean": list(tiny_vit.mean), "std": list(tiny_vit.std)})
    return path


def test_pages_work_on_any_open_clip_model_a_vit_checkpoint(app, vit_checkpoint):
    app.query_params["model"] = f"openclip:{vit_checkpoint}"
    app.run()
    ok(app)
    assert app.subheader[0].value.startswith("transformer.resblocks.")  # the ViT's default block
    button(app, "Render channel")  # offered, as for the ResNet
    widget(app, "neuron.vis.channel.steps").set_value(8)
    app.run()
    button(app, "Render channel").click().run()
    ok(app)
    for slug in ("layer", "attribution", "typographic"):
        open_page(app, slug)
        ok(app)
    button(app, "Run typographic_attack")


def test_the_app_opens_on_the_most_multimodal_unit_with_its_results_computed_once(app, tmp_path, monkeypatch):
    from mmneurons.models import load_model

    monkeypatch.setenv("MMNEURONS_CACHE_DIR", str(tmp_path))
    assert load_model("demo:shapes").featured_units[0] == "layer4.0:489"  # the manifest's most multimodal unit
    app.run()  # the Neuron page; no unit asked for
    ok(app)
    assert app.subheader[0].value == "layer4.0:489"
    labels = [b.label for b in app.button]
    assert "Render channel" not in labels and "Run modality" not in labels  # shown without a click
    assert any(c.value.startswith("activation ") for c in app.caption)      # the channel visualization
    assert {m.label: m.value for m in app.metric}["top concept"] == "star"  # the modality chart's result
    assert sum("stored on disk for the next start" in c.value for c in app.caption) == 2
    assert len(list((tmp_path / "app-results").iterdir())) == 2
    assert "Run dataset_examples" in labels  # the other probes wait for a click, as everywhere

    state.results().clear()  # the next start: nothing in memory, both read from disk
    again = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    again.query_params["model"] = "demo:shapes"
    again.run()
    ok(again)
    assert sum("from the disk cache" in c.value for c in again.caption) == 2
    assert {m.label: m.value for m in again.metric}["top concept"] == "star"

    state.results().clear()  # a unit asked for is shown as asked: nothing runs without a click
    asked = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    asked.query_params.update({"model": "demo:shapes", "layer": "layer4.0", "unit": "489"})
    asked.run()
    assert "Render channel" in [b.label for b in asked.button]


def test_an_app_served_to_others_reads_only_its_data_folders_and_offers_only_its_models(app, monkeypatch,
                                                                                         tmp_path):
    from mmneurons.access import DATA_ROOTS_ENV, MODELS_ENV

    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    monkeypatch.setenv(MODELS_ENV, "demo:shapes")
    app.query_params.update({"layer": "layer4.0", "unit": "7", "source": "words"})
    open_page(app, "neuron")
    widget(app, "w.source.words.path").set_value("/etc/passwd")
    app.run()
    assert not app.exception
    errors = [e.value for e in app.sidebar.error]
    assert any("/etc/passwd is outside the folders this app may read" in e for e in errors), errors
    assert app.selectbox(key="w.model").options == ["demo:shapes"]  # no other model is offered
    other = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    other.query_params["model"] = "openclip:RN50@random"  # typed or linked: refused before loading
    other.run()
    assert not other.exception
    assert "'openclip:RN50@random' is not offered by this app; models: demo:shapes" in other.error[0].value


@pytest.fixture
def slow_app(app, monkeypatch):
    """The app with the fixture package ``mmneurons_slow`` (a probe that reports progress for a while)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fixtures" / "mmneurons_slow"))
    registry = PluginRegistry(entry_points=False)
    registry.register(importlib.import_module("mmneurons_slow"), name="slow_ui")
    reset_registry(registry)
    app.query_params.update({"layer": "layer4.0", "unit": "7"})
    yield app
    reset_registry(None)


def test_a_run_past_the_time_limit_is_stopped_and_frees_the_model(slow_app, monkeypatch):
    monkeypatch.setenv("MMNEURONS_APP_RUN_LIMIT_S", "0.5")
    open_page(slow_app, "neuron")
    button(slow_app, "Run slow").click().run()
    assert not slow_app.exception
    errors = [e.value for e in slow_app.error]
    assert any("probe 'slow'" in e and "stopped after 0.5 s, the time limit of one run" in e for e in errors), errors
    assert state.run_board().holder("demo:shapes") is None


def test_a_session_waiting_for_another_run_on_the_model_is_told_and_then_runs(slow_app):
    """Another session's run holds the model on the shared board for 2 s (what its run_with_progress
    does); this session's run waits, says for whom, and runs once the model is free."""
    import threading

    board = state.run_board()
    open_page(slow_app, "neuron")
    widget(slow_app, "neuron.probe.slow.seconds").set_value(0.1)
    slow_app.run()
    assert board.acquire("demo:shapes", "probe 'slow' (plugin 'another session')", timeout=1)
    threading.Timer(2.0, board.release, args=("demo:shapes",)).start()
    button(slow_app, "Run slow").click().run()
    ok(slow_app)
    [took] = [c.value for c in slow_app.caption if c.value.startswith("computed in ")]
    assert " after waiting " in took and " s for another session's run" in took, took
    waited = float(took.split(" after waiting ")[1].split(" s ")[0])
    assert 1 <= waited <= 30, took  # held for 2 s
    assert {m.label: m.value for m in slow_app.metric}["slept"] == "0.1"  # then it ran
    assert board.holder("demo:shapes") is None
