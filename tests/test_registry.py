"""The plugin manager: built-ins, entry points, error isolation, strict mode, blocking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from mmneurons import hookspecs
from mmneurons.hookspecs import hookimpl
from mmneurons.kinds import HOOK_KINDS, ImageSourceFactory
from mmneurons.registry import PluginError, PluginRegistry

from .helpers import forget_modules, install_fixture_package


def test_builtins_are_registered_like_any_plugin(registry):
    names = {p.name: p for p in registry.plugins()}
    assert {"openclip_models", "image_sources", "demo"} <= set(names)
    assert names["openclip_models"].hooks == ["mmneurons_model_providers"]
    assert names["openclip_models"].builtin and names["openclip_models"].version
    assert [p.name for p in registry.model_providers()] == ["openclip", "demo"]
    assert {s.name for s in registry.image_sources()} >= {"folder", "words"}
    assert registry.problems == []


def test_every_hookspec_is_a_plugin_kind():
    specs = {n for n in dir(hookspecs) if n.startswith("mmneurons_")}
    assert specs == set(HOOK_KINDS)


@pytest.mark.parametrize("hook", list(HOOK_KINDS))
def test_every_hook_collects_objects_from_a_plugin(registry, hook):
    thing = types.SimpleNamespace(name=f"fake_{hook}", description="fake")
    plugin = types.ModuleType("fake_plugin")
    setattr(plugin, hook, hookimpl(lambda: [thing]))
    plugin.__dict__[hook].__name__ = hook
    assert registry.register(plugin, name="fake_plugin") == "fake_plugin"
    collected = registry.collect(hook)
    assert thing in collected
    assert thing.provided_by == "fake_plugin"
    registry.unregister("fake_plugin")
    assert thing not in registry.collect(hook)


def _plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        func.__name__ = hook
        setattr(module, hook, hookimpl(func))
    return module


def test_a_raising_hook_is_reported_and_the_rest_keeps_working(registry):
    def boom():
        raise RuntimeError("kaboom")

    registry.register(_plugin("exploding", mmneurons_image_sources=boom), name="exploding")
    sources = registry.image_sources()
    assert {s.name for s in sources} >= {"folder", "words"}
    registry.image_sources()  # collected again: still reported once
    [problem] = registry.problems
    assert problem.plugin == "exploding" and problem.hook == "mmneurons_image_sources"
    assert "kaboom" in str(problem) and "RuntimeError" in str(problem)
    info = {p.name: p for p in registry.plugins()}["exploding"]
    assert len([e for e in info.errors if "kaboom" in e]) == 1


def test_misspelled_hook_is_caught_with_a_suggestion(registry):
    plugin = _plugin("typo", mmneurons_probe=lambda: [])
    assert registry.register(plugin, name="typo") is None
    [problem] = registry.problems
    assert "mmneurons_probe" in problem.error and "did you mean 'mmneurons_probes'" in problem.error
    assert registry.pm.get_plugin("typo") is None


def test_duplicate_names_within_a_kind_name_both_plugins(registry):
    class Folder2(ImageSourceFactory):
        name = "folder"

        def create(self, **values):
            return None

    registry.register(_plugin("copycat", mmneurons_image_sources=lambda: [Folder2()]), name="copycat")
    folder = registry.get("mmneurons_image_sources", "folder")
    assert folder.provided_by == "image_sources"  # the first one registered is kept
    [problem] = registry.problems
    assert "'image_sources'" in problem.error and "'copycat'" in problem.error


def test_strict_mode_reraises():
    reg = PluginRegistry(entry_points=False, env={"MMNEURONS_STRICT_PLUGINS": "1"})

    def boom():
        raise RuntimeError("kaboom")

    reg.register(_plugin("exploding", mmneurons_image_sources=boom), name="exploding")
    with pytest.raises(PluginError, match="plugin 'exploding'.*kaboom"):
        reg.image_sources()


def test_disable_plugins_by_name():
    reg = PluginRegistry(entry_points=False, env={"MMNEURONS_DISABLE_PLUGINS": "image_sources, nothing"})
    assert [s.name for s in reg.image_sources()] == ["demo_shapes"]  # folder and words are gone
    assert [p.name for p in reg.model_providers()] == ["openclip", "demo"]
    info = {p.name: p for p in reg.plugins()}["image_sources"]
    assert info.hooks == [] and "disabled" in info.errors[0]


def test_unknown_name_lists_known_ones(registry):
    with pytest.raises(KeyError, match="did you mean 'folder'.*known: folder, words"):
        registry.get("mmneurons_image_sources", "foldr")


@pytest.fixture
def installed_fixtures(tmp_path, monkeypatch):
    site = install_fixture_package("mmneurons_hello", tmp_path)
    install_fixture_package("mmneurons_broken", tmp_path)
    monkeypatch.syspath_prepend(str(site))
    yield site
    forget_modules("mmneurons_hello")
    forget_modules("mmneurons_broken")


def test_third_party_plugins_are_discovered_through_entry_points(installed_fixtures):
    reg = PluginRegistry(env={})
    info = {p.name: p for p in reg.plugins()}
    assert info["hello"].distribution == "mmneurons-hello" and info["hello"].version == "0.3.1"
    assert info["hello"].hooks == ["mmneurons_image_sources"] and not info["hello"].builtin
    hello = reg.get("mmneurons_image_sources", "hello_colors")
    source = hello.create(size=8)
    assert len(source) == 3 and source.load(0).getpixel((0, 0)) == (255, 0, 0)
    # the broken one is reported with distribution and version, and nothing else suffers
    assert info["broken"].errors and "mmneurons_dependency_that_does_not_exist" in info["broken"].errors[0]
    [problem] = reg.problems
    assert (problem.plugin, problem.distribution, problem.version) == ("broken", "mmneurons-broken", "9.9.9")
    assert [p.name for p in reg.model_providers()] == ["openclip", "demo"]


def test_broken_entry_point_raises_in_strict_mode(installed_fixtures):
    with pytest.raises(PluginError, match="plugin 'broken' \\(mmneurons-broken 9.9.9\\)"):
        PluginRegistry(env={"MMNEURONS_STRICT_PLUGINS": "1"})


def test_cli_lists_third_party_and_broken_plugins(installed_fixtures):
    env = {**os.environ, "PYTHONPATH": str(installed_fixtures), "MMNEURONS_LOAD_ENTRYPOINTS": "1"}
    out = subprocess.run([sys.executable, "-m", "mmneurons.cli", "plugins", "--json", "--all"],
                         capture_output=True, text=True, env=env, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["hello"]["version"] == "0.3.1"
    assert rows["hello"]["provides"] == [{"kind": "image_source", "name": "hello_colors",
                                          "description": "Solid red, green and blue images."}]
    assert rows["broken"]["errors"] and rows["openclip_models"]["builtin"]


def _install(site, dist: str, module: str, code: str, entry_point: str) -> None:
    """An installed distribution with one ``mmneurons`` entry point, as pip would leave it."""
    (site / f"{module}.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mmneurons]\n{entry_point} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mm_exits", "mm_twin_a", "mm_twin_b"):
        forget_modules(name)


def test_a_plugin_that_exits_at_import_is_reported_and_every_command_goes_on(site):
    import importlib

    _install(site, "mmneurons-exits", "mm_exits", "import sys\nsys.exit(3)\n", "exits")
    importlib.invalidate_caches()
    info = {p.name: p for p in PluginRegistry(env={}).plugins()}
    assert info["exits"].errors == ["error importing plugin: called sys.exit(3)"]
    assert (info["exits"].distribution, info["exits"].version) == ("mmneurons-exits", "1.0")
    env = {**os.environ, "PYTHONPATH": str(site), "MMNEURONS_LOAD_ENTRYPOINTS": "1"}
    out = subprocess.run([sys.executable, "-m", "mmneurons.cli", "plugins"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "exits (mmneurons-exits 1.0)" in out.stdout and "called sys.exit(3)" in out.stdout


def test_the_second_of_two_entry_points_with_one_name_is_the_one_blamed(site):
    import importlib

    probe = ("from mmneurons.hookspecs import hookimpl\n"
             "@hookimpl\n"
             "def mmneurons_image_sources():\n"
             "    return []\n")
    _install(site, "mmneurons-twin-a", "mm_twin_a", probe, "twin")
    _install(site, "mmneurons-twin-b", "mm_twin_b", probe, "twin")
    importlib.invalidate_caches()
    rows = {p.name: p for p in PluginRegistry(env={}).plugins() if p.name.startswith("twin")}
    kept = rows.pop("twin")
    [(name, other)] = rows.items()
    assert not kept.errors and kept.hooks == ["mmneurons_image_sources"]
    assert name == f"twin ({other.distribution})" and other.distribution != kept.distribution
    assert other.errors and "already registered (from " + kept.distribution in other.errors[0] and not other.hooks


class _NameRaises:
    kind, description, params = "probe", "", ()

    @property
    def name(self):
        raise RuntimeError("no name today")


def test_hooks_that_raise_exit_or_return_garbage_are_listed_by_plugin(registry):
    from click.testing import CliRunner

    from mmneurons.cli import main

    good = types.SimpleNamespace(name="fine_source", description="ok", params=(), supports=lambda m: True)

    class Misbehaving:
        @hookimpl
        def mmneurons_probes(self):
            return [object(), _NameRaises()]

        @hookimpl
        def mmneurons_image_sources(self):
            return [good]

        @hookimpl
        def mmneurons_visualizers(self):
            return None

        @hookimpl
        def mmneurons_attributors(self):
            return "not a list"

        @hookimpl
        def mmneurons_renderers(self):
            sys.exit(7)

    registry.register(Misbehaving(), name="misbehaving")
    out = CliRunner().invoke(main, ["plugins", "--all"], catch_exceptions=False)
    assert out.exit_code == 0 and "Traceback" not in out.output, out.output
    assert "image_source fine_source: ok" in out.output  # what works is provided
    errors = {p.name: p for p in registry.plugins()}["misbehaving"].errors
    assert any("returned <object object>, which has no 'name'" in e for e in errors), errors
    assert any("whose 'name' raised RuntimeError: no name today" in e for e in errors), errors
    assert any("mmneurons_visualizers: TypeError: returned None instead of a list of visualizer objects" in e
               for e in errors), errors
    assert any("returned 'not a list' instead of a list" in e for e in errors), errors
    assert any("mmneurons_renderers: called sys.exit(7)" in e for e in errors), errors
    assert all(f"ERROR: {e}" in out.output for e in errors)
    registry.probes()
    assert {p.name: p for p in registry.plugins()}["misbehaving"].errors == errors  # each reported once
    assert [p.name for p in registry.probes() if p.name.startswith("neuron")] == ["neuron_search", "neuron_label"]
