"""The plugin bases do the shared steps: parameters resolved and the target parsed before compute."""

from __future__ import annotations

import pytest

from mmneurons.errors import LayerError, UnitError
from mmneurons.kinds import Probe
from mmneurons.params import Param, ParamError
from mmneurons.units import Unit


class _Recorder(Probe):
    name = "recorder"
    targets = ("unit", "layer")
    params = (Param("k", "int", 3, min=1, help="how many"),)

    def compute(self, model, target, source, values, progress):
        return target, values


def test_run_hands_compute_a_validated_target_and_typed_values(tiny_resnet):
    probe = _Recorder()
    unit, values = probe.run(tiny_resnet, " layer3:5 ", None, {"k": "7"})
    assert unit == Unit("layer3", 5) and values == {"k": 7}
    layer, values = probe.run(tiny_resnet, "layer3", None, None)
    assert layer == "layer3" and values == {"k": 3}
    with pytest.raises(UnitError, match="channel 999 is out of range"):
        probe.run(tiny_resnet, "layer3:999", None, {})
    with pytest.raises(LayerError):
        probe.run(tiny_resnet, "layer9", None, {})
    with pytest.raises(ParamError, match="unknown parameter.*of probe 'recorder': kk"):
        probe.run(tiny_resnet, "layer3", None, {"kk": 1})


def test_targets_a_probe_does_not_take_are_refused(tiny_resnet):
    class LayerOnly(_Recorder):
        targets = ("layer",)

    class UnitOnly(_Recorder):
        targets = ("unit",)

    class Text(_Recorder):
        targets = ("text",)

    with pytest.raises(ValueError, match="takes a layer, not a unit: give e.g. 'layer3'"):
        LayerOnly().run(tiny_resnet, "layer3:1", None, {})
    with pytest.raises(UnitError, match="cannot parse unit 'layer3'"):
        UnitOnly().run(tiny_resnet, "layer3", None, {})
    assert Text().run(tiny_resnet, "  a star ", None, {})[0] == "a star"


def test_a_probe_without_compute_says_what_to_define(tiny_resnet):
    class Empty(Probe):
        name = "empty"
        targets = ("text",)

    with pytest.raises(NotImplementedError, match="probe 'empty' must define compute"):
        Empty().run(tiny_resnet, "x", None, {})
