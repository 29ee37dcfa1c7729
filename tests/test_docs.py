"""The promises users read: hooks documented, the README's plugin example works, CI runs the
README's test command."""

from __future__ import annotations

import re
import types
from pathlib import Path

from mmneurons.kinds import HOOK_KINDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_hook_is_documented_with_its_signature():
    for hook in HOOK_KINDS:
        assert f"`{hook}()`" in README, f"{hook} is not documented in README.md"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^(.*python3 -m pip install -q uv && uv run --extra test pytest)$", README, flags=re.M)
    assert len(commands) == 1
    assert commands[0] in (ROOT / ".ci" / "run").read_text()


def test_readme_plugin_example_is_the_fixture_and_it_works(registry):
    blocks = re.findall(r"```python\n# mmneurons_hello/__init__.py\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1
    fixture = (ROOT / "tests/fixtures/mmneurons_hello/mmneurons_hello/__init__.py").read_text()
    assert blocks[0].strip() in fixture
    module = types.ModuleType("readme_plugin")
    exec(compile(blocks[0], "README.md", "exec"), module.__dict__)
    registry.register(module, name="readme_plugin")
    source = registry.get("mmneurons_image_sources", "hello_colors").create(size=8)
    assert [source.record(i).id for i in range(3)] == ["red", "green", "blue"]
    toml = re.findall(r"```toml\n(.*?)```", README, flags=re.S)[0]
    assert '[project.entry-points.mmneurons]\nhello = "mmneurons_hello"' in toml
    assert toml.split("[project.entry-points.mmneurons]")[1].strip() in \
        (ROOT / "tests/fixtures/mmneurons_hello/pyproject.toml").read_text()


def test_readme_examples_import_only_the_public_api():
    for tag in ("# mmneurons_hello/__init__.py", "# captum-example"):
        [block] = re.findall(r"```python\n" + re.escape(tag) + r"\n(.*?)```", README, flags=re.S)
        ours = re.findall(r"^(?:from|import) (mmneurons\S*)", block, flags=re.M)
        assert ours and set(ours) == {"mmneurons"}, (tag, ours)


def test_readme_captum_example_runs(registry):
    blocks = re.findall(r"```python\n# captum-example\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["attributions"].shape == (1, 3, 64, 64) and namespace["cam"].shape[1] == 1
    delta, total = float(namespace["delta"]), float(namespace["attributions"].sum())
    gap = total - delta  # Captum's delta = sum of attributions - (f(x) - f(baseline))
    assert abs(gap) > 0.1 and abs(delta) < 0.05 * abs(gap), (delta, gap)


def test_readme_main_command_starts_the_app_and_pictures_exist():
    assert re.search(r"^python3 -m pip install -q uv && uv run mmneurons app$", README, flags=re.M)
    pictures = re.findall(r"\(docs/img/(app-\w+\.png)\)", README)
    pages = ("neuron", "layer", "search", "attribution", "typographic", "plugins")
    assert {f"app-{p}.png" for p in pages} <= set(pictures)
    for picture in pictures:
        assert (ROOT / "docs" / "img" / picture).stat().st_size > 10_000, picture
