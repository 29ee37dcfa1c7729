"""Building an atlas: resume after SIGKILL at any stage, one build at a time, reads during a build,
stages rebuilt when their parameters change, the atlas's identity kept."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from mmneurons.atlas import Atlas, AtlasError, BuildOptions, build_atlas
from mmneurons.cli import main
from mmneurons.errors import OutputError
from mmneurons.kinds import Probe
from mmneurons.params import Param
from mmneurons.results import ProbeResult

from .build_worker import LAYERS, options, source
from .conftest import Child, assert_same_atlas, contents

#: where the killed builds die: (stage, least progress seen) -> SIGKILL
KILL_POINTS = (("examples", 16), ("examples-maps", 8), ("vis", 32), ("modality", 0), ("neuron_label", 0),
               ("rendered_words", 0))


def run_until(child: Child, stage: str, least: int) -> bool:
    """Follow the build until it is in ``stage`` with at least ``least`` done, then kill it with
    SIGKILL; False if the build finished first."""
    for line in child.lines():
        parts = line.split()
        if parts[:2] == ["STAGE", stage] and (parts[2] == "start" if least == 0 else
                                              parts[2].isdigit() and int(parts[2]) >= least):
            child.kill()
            return True
        assert not line.startswith("ERROR"), line
    assert child.wait() == 0
    return False


def test_builds_killed_in_every_stage_resume_to_the_uninterrupted_atlas(tmp_path, reference_atlas, build_server):
    folder = tmp_path / "atlas"
    killed = []
    for stage, least in KILL_POINTS:
        if run_until(build_server.start(folder), stage, least):
            killed.append(stage)
    assert killed == [stage for stage, _ in KILL_POINTS]  # each stage was running when it died
    child = build_server.start(folder)
    assert list(child.lines())[-1] == "DONE\n" and child.wait() == 0
    assert_same_atlas(folder, reference_atlas)
    with Atlas.open(folder) as book:
        states = [b.state for b in book.builds()]
    assert states == ["killed"] * len(KILL_POINTS) + ["done"]
    assert not (folder / "scan.partial.pt").exists()
    assert not list((folder / "files").glob("*/.tmp-*"))


def test_a_second_build_is_refused_and_reads_go_on_while_one_runs(tmp_path, tiny_resnet, registry, build_server):
    folder = tmp_path / "atlas"
    child = build_server.start(folder, slow=True)
    try:
        for line in child.lines():
            if line.startswith("STAGE vis") and line.split()[2].isdigit() and int(line.split()[2]) >= 16:
                break  # one batch of visualizations is stored, the next is being optimized
        else:
            pytest.fail("the build ended early")
        images = source()
        with pytest.raises(AtlasError, match="another build is writing"):
            build_atlas(tiny_resnet, folder, images, images.describe(), options(), registry=registry)
        with Atlas.open(folder) as book:   # reads neither block nor see half a batch
            for _ in range(5):
                n = book.counts("layer1.0").get("vis", 0)
                assert n % 16 == 0 and n >= 16
                rows = book.layer("layer1.0").table()
                assert sum(r["vis.file"] is not None for r in rows) >= n
                time.sleep(0.2)
            assert book.stages("layer1.0")["vis"].state == "partial"
            assert book.stages("layer1.0")["examples"].state == "done"
            assert book.builds()[-1].state == "running"
    finally:
        child.kill()


def test_a_waiting_build_continues_once_the_running_one_ends(tmp_path, tiny_resnet, registry, build_server):
    import threading

    folder = tmp_path / "atlas"
    child = build_server.start(folder, slow=True)
    for line in child.lines():
        if line.startswith("STAGE vis"):
            break
    images, outcome = source(), {}

    def waiting() -> None:
        outcome["report"] = build_atlas(tiny_resnet, folder, images, images.describe(), options(), registry=registry,
                                        wait=True)

    thread = threading.Thread(target=waiting)
    thread.start()
    thread.join(1.5)
    assert thread.is_alive() and "report" not in outcome       # waiting, not refused
    child.kill()
    thread.join(120)
    assert outcome["report"]["examples"] == {"layers": 0}      # the killed build's scan is kept
    with Atlas.open(folder) as book:
        assert [b.state for b in book.builds()] == ["killed", "done"]
        assert {s.state for s in book.stages().values()} == {"done"}


def test_a_stage_built_with_other_parameters_is_built_again(tmp_path, tiny_resnet, registry):
    folder, images = tmp_path / "atlas", source()

    def build(steps: int) -> dict:
        opts = BuildOptions(layers=["layer1.0"], stages=["examples", "vis"], k=2, vis_params={"steps": steps},
                            vis_batch=64, batch_size=16)
        return build_atlas(tiny_resnet, folder, images, images.describe(), opts, registry=registry)

    assert build(2) == {"examples": {"layers": 1, "images": 72, "unreadable": 0}, "vis": {"units": 64}}
    before = contents(folder)
    assert build(2) == {"examples": {"layers": 0}, "vis": {"units": 0}}   # nothing left to do
    assert contents(folder) == before
    assert build(3)["vis"] == {"units": 64}
    after = contents(folder)
    with Atlas.open(folder) as book:
        assert book.stages("layer1.0")["vis"].params["steps"] == 3
    changed = [k for k in before["values"] if k[2] == "vis" and before["values"][k] != after["values"][k]]
    assert len(changed) == 64
    assert all(before["values"][k] == after["values"][k] for k in before["values"] if k[2] == "examples")
    # the old visualizations are no longer named: `atlas gc` removes them, and only them
    with Atlas.open(folder) as book:
        unused = {h for h, _, _ in book.unreferenced_files()}
    old = {v["file"] for k, v in before["values"].items() if k[2] == "vis"}
    assert unused == old - {v["file"] for k, v in after["values"].items() if k[2] == "vis"} and unused
    info = CliRunner().invoke(main, ["atlas", "info", str(folder)])
    assert f"{len(unused)} files no unit names" in info.output
    result = CliRunner().invoke(main, ["atlas", "gc", str(folder)])
    assert result.exit_code == 0 and f"removed {len(unused)} unreferenced files" in result.output
    assert not any((folder / "files" / h[:2] / f"{h}.png").exists() for h in unused)
    assert contents(folder)["values"] == after["values"]
    for h in contents(folder)["files"]:
        assert list((folder / "files" / h[:2]).glob(f"{h}.*")), h
    assert "removed 0 unreferenced files" in CliRunner().invoke(main, ["atlas", "gc", str(folder)]).output


def test_an_atlas_keeps_one_model_and_source(tmp_path, tiny_resnet, tiny_vit, registry):
    folder, images = tmp_path / "atlas", source()
    opts = BuildOptions(layers=["layer1.0"], stages=["examples"], k=2, batch_size=16)
    build_atlas(tiny_resnet, folder, images, images.describe(), opts, registry=registry)
    with pytest.raises(AtlasError, match="another model or source.*model_id"):
        build_atlas(tiny_vit, folder, images, images.describe(), BuildOptions(layers=["transformer.resblocks.0"],
                                                                              stages=["examples"]), registry=registry)
    other = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=1, size=64)
    with pytest.raises(AtlasError, match="source"):
        build_atlas(tiny_resnet, folder, other, other.describe(), opts, registry=registry)


def test_a_folder_of_other_files_is_never_written(tmp_path, tiny_resnet, registry):
    (tmp_path / "notes.txt").write_text("mine")
    images = source()
    with pytest.raises(OutputError, match="holds other files"):
        build_atlas(tiny_resnet, tmp_path, images, images.describe(), BuildOptions(layers=["layer1.0"]),
                    registry=registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_unknown_stages_are_named(tmp_path, tiny_resnet, registry):
    images = source()
    known = "stages: examples, vis, path, ablation, concept_decomposition, modality"
    with pytest.raises(AtlasError, match=f"unknown atlas stage.*colour.*{known}"):
        build_atlas(tiny_resnet, tmp_path / "a", images, images.describe(),
                    BuildOptions(layers=["layer1.0"], without=["colour"]), registry=registry)


class BrightnessProbe(Probe):
    """A third-party probe: per-unit rows over a layer, declared as an atlas stage."""

    name = "brightness"
    description = "mean activation of each unit on white and black images"
    targets = ("layer",)
    source = "none"
    atlas = {"level": 255}
    params = (Param("level", "int", 128, min=0, max=255, help="gray level of the bright image"),)

    def compute(self, model, target, source, values, progress=None):
        import torch
        from PIL import Image

        from mmneurons.activations import capture_layers

        pixels = torch.stack([model.pixels(Image.new("RGB", (64, 64), (v, v, v))) for v in (values["level"], 0)])
        acts = capture_layers(model, pixels, [target])[target].mean(dim=(2, 3))
        rows = [{"unit": f"{target}:{c}", "bright": float(acts[0, c]), "dark": float(acts[1, c]),
                 "tone": "bright" if acts[0, c] > acts[1, c] else "dark"} for c in range(acts.shape[1])]
        return ProbeResult(probe=self.name, model_id=model.model_id, target=target, tables={"units": rows},
                           params=values)


def test_a_third_party_probe_adds_a_column(tmp_path, tiny_resnet, registry):
    class Plugin:
        from mmneurons.hookspecs import hookimpl

        @hookimpl
        def mmneurons_probes(self):
            return [BrightnessProbe()]

    registry.register(Plugin(), "brightness_plugin")
    images = source()
    report = build_atlas(tiny_resnet, tmp_path / "a", images, images.describe(),
                         BuildOptions(layers=["layer1.0"], stages=["brightness"]), registry=registry)
    assert report == {"brightness": {"layers": 1}}
    with Atlas.open(tmp_path / "a") as book:
        unit = book.unit("layer1.0:3").values["brightness"]["units"]
        assert set(unit) == {"bright", "dark", "tone"}
        assert book.stages("layer1.0")["brightness"].params == {"level": 255}
        assert book.stages("layer1.0")["brightness"].code_version.startswith("brightness_plugin")
        table = book.layer("layer1.0").records()
        assert table["brightness.units.bright"].shape == (64,)
        tones = {r["brightness.units.tone"] for r in book.layer("layer1.0").table()}
        assert {h.unit for h in book.search(sorted(tones)[0])} == {
            f"layer1.0:{c}" for c, r in enumerate(book.layer("layer1.0").table())
            if r["brightness.units.tone"] == sorted(tones)[0]}


def test_reference_atlas_holds_every_unit_of_every_stage(reference_atlas):
    with Atlas.open(reference_atlas) as book:
        assert [layer.name for layer in book.layers()] == list(LAYERS)
        for layer in book.layers():
            assert book.counts(layer.name) == {s: layer.channels for s in
                                               ("examples", "modality", "neuron_label", "path", "rendered_words",
                                                "vis")}
            assert {s.state for s in layer.stages().values()} == {"done"}
        unit = book.unit("layer2.0:5")
        assert len(unit.values["examples"]["top"]) == 3 and len(unit.values["examples"]["bottom"]) == 3
        tops = [e["activation"] for e in unit.values["examples"]["top"]]
        assert tops == sorted(tops, reverse=True)
        assert min(tops) >= max(e["activation"] for e in unit.values["examples"]["bottom"])
        assert book.maps("layer2.0:5").shape == (3, 8, 8)
        assert book.file(unit.values["vis"]["file"]).read_bytes()[:4] == b"\x89PNG"
        path = unit.values["path"]       # the render's path check against its top examples
        assert 0.0 <= path["score"] <= 1.0 and list(path["layers"]) == ["act3", "layer1.0"]
        assert bool(path["warning"]) == (path["score"] < 0.5)
        assert "64 reference images" in book.layer("layer2.0").stages()["path"].note
        profile = unit.values["modality"]["ranking"]["profile"]
        assert profile["modalities"] == ["drawing", "photo", "text"] and len(profile["means"][0]) == 12


def test_diversity_visualizations_keep_their_samples(tmp_path, tiny_resnet, registry):
    images = source()
    build_atlas(tiny_resnet, tmp_path / "a", images, images.describe(),
                BuildOptions(layers=["layer1.0"], stages=["vis"], visualizer="diversity",
                             vis_params={"steps": 2, "k": 3}, vis_batch=64), registry=registry)
    with Atlas.open(tmp_path / "a") as book:
        vis = book.unit("layer1.0:9").values["vis"]
        assert book.stages("layer1.0")["vis"].params["visualizer"] == "diversity"
        assert len(vis["samples"]) == 2 and len({vis["file"], *vis["samples"]}) == 3
        assert all(book.file(d).read_bytes()[:4] == b"\x89PNG" for d in vis["samples"])


def test_a_vit_layer_builds_like_a_resnet_one(tmp_path, tiny_vit, registry):
    images = source()
    layer = "transformer.resblocks.1"
    report = build_atlas(tiny_vit, tmp_path / "a", images, images.describe(),
                         BuildOptions(layers=[layer], stages=["examples", "vis", "modality"], k=2,
                                      vis_params={"steps": 2}, vis_batch=64, batch_size=16), registry=registry)
    assert report["vis"] == {"units": tiny_vit.layer_info(layer).channels}
    with Atlas.open(tmp_path / "a") as book:
        channels = tiny_vit.layer_info(layer).channels
        assert book.counts(layer) == {"examples": channels, "vis": channels, "modality": channels}
        assert book.maps(f"{layer}:3").shape == (2, *tiny_vit.layer_info(layer).shape[1:])


def test_costly_probe_columns_are_built_only_when_named(tmp_path, tiny_resnet, registry):
    images = source()
    report = build_atlas(tiny_resnet, tmp_path / "a", images, images.describe(),
                         BuildOptions(layers=["layer1.0"], stages=["ablation", "concept_decomposition"],
                                      probe_params={"concept_decomposition": {"units": 2}}), registry=registry)
    assert report == {"ablation": {"layers": 1}, "concept_decomposition": {"layers": 1}}
    with Atlas.open(tmp_path / "a") as book:
        assert book.counts("layer1.0")["ablation"] == 64  # every unit removed on its own
        effect = book.unit("layer1.0:3").values["ablation"]["units"]
        assert effect["most_hurt"] in {"arrow", "circle", "cross", "diamond", "heart", "hexagon", "moon", "ring",
                                       "spiral", "square", "star", "triangle"} and "logit_drop" in effect
        assert 1 <= book.counts("layer1.0")["concept_decomposition"] <= 24  # 12 concepts x 2 units at most


def test_an_sae_layer_is_built_like_any_layer(tiny_resnet, tmp_path, registry):
    """Every stage on the features of an SAE attached to a tiny model: one row per feature."""
    import copy
    import dataclasses

    from mmneurons.sae import SAE, SAEInfo, attach_sae

    model = copy.deepcopy(tiny_resnet)
    name = attach_sae(model, SAE(SAEInfo("layer2.0", model.model_id, None, features=24, k=4, channels=128)))
    images = source()
    build_atlas(model, tmp_path / "atlas", images, images.describe(),
                dataclasses.replace(options(), layers=(name,)), registry=registry)
    with Atlas.open(tmp_path / "atlas") as book:
        [layer] = book.layers()
        rows = layer.table()
        stored = book.unit(f"{name}:3").values
    assert (layer.name, layer.channels, len(rows)) == (name, 24, 24)
    assert {"examples", "vis", "modality", "neuron_label", "rendered_words"} <= set(stored)


def test_the_path_stage_follows_the_renders_and_says_when_it_cannot_run(tmp_path, tiny_resnet, registry):
    images = source()

    def build(seed: int) -> None:
        build_atlas(tiny_resnet, tmp_path / "a", images, images.describe(),
                    BuildOptions(layers=["act3", "layer1.0"], stages=["examples", "vis", "path"], k=2,
                                 vis_params={"steps": 2, "seed": seed}, vis_batch=64, batch_size=16),
                    registry=registry)

    build(0)
    with Atlas.open(tmp_path / "a") as book:
        skipped = book.stages("act3")["path"]
        assert skipped.state == "skipped" and "no layer before act3" in skipped.note
        assert list(book.unit("layer1.0:3").values["path"]["layers"]) == ["act3"]
        first = book.stages("layer1.0")["path"]
    build(0)  # nothing new: the scores stay those of the first build
    with Atlas.open(tmp_path / "a") as book:
        assert book.stages("layer1.0")["path"].build == first.build
    build(1)  # other renders: the scores are computed again, from the new images
    with Atlas.open(tmp_path / "a") as book:
        again = book.stages("layer1.0")["path"]
        assert again.build > first.build and again.state == "done"
        assert json.loads(again.params["from"]["vis"][0])["seed"] == 1
        assert book.counts("layer1.0")["path"] == tiny_resnet.layer_info("layer1.0").channels
