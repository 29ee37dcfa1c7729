"""``import mmneurons`` is the public API: every name in ``__all__`` resolves, importing it loads no
torch, and the hook specifications say what each hook returns."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

import mmneurons
from mmneurons import hookspecs, kinds


def test_import_is_light_and_lists_the_api():
    code = "import sys, mmneurons; print(','.join(mmneurons.__all__)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False"
    for name in ("hookimpl", "Probe", "Visualizer", "Param", "Unit", "Direction", "load_model", "ProbeResult",
                 "FeatureVis", "TopKActivations", "UnitContributions", "load_result", "UnitForward"):
        assert name in out[0].split(",")


@pytest.mark.parametrize("name", [n for n in mmneurons.__all__ if n != "__version__"])
def test_every_public_name_resolves_to_its_definition(name):
    value = getattr(mmneurons, name)
    assert getattr(value, "__module__", "mmneurons").startswith("mmneurons") or name in ("hookimpl", "Progress")
    assert name in dir(mmneurons)


def test_all_is_exactly_what_loads_lazily():
    assert set(mmneurons.__all__) - {"__version__"} == set(mmneurons._EXPORTS)


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        mmneurons.nothing_here  # noqa: B018


def test_hook_specs_return_lists_of_their_kind():
    namespace = {**vars(kinds), "click": __import__("click")}
    for hook, kind in kinds.HOOK_KINDS.items():
        returned = typing.get_type_hints(getattr(hookspecs, hook), globalns=namespace)["return"]
        assert typing.get_origin(returned) is list
        [item] = typing.get_args(returned)
        assert getattr(item, "kind", "command") == kind
