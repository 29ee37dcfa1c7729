"""Units and directions: parsing, validation against a model, reading activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.models import LayerError
from mmneurons.units import Direction, Unit, UnitError


@pytest.mark.parametrize("text, unit", [
    ("layer4.5:17", Unit("layer4.5", 17)),
    ("layer4.5:17@4,3", Unit("layer4.5", 17, (4, 3))),
    ("transformer.resblocks.11:700", Unit("transformer.resblocks.11", 700)),
])
def test_parse_and_print_round_trip(text, unit):
    assert Unit.parse(text) == unit
    assert str(unit) == text
    assert Unit.from_dict(unit.to_dict()) == unit


@pytest.mark.parametrize("text", ["layer4.5", "layer4.5:x", ":3", "layer4.5:3@1", "4.5:1"])
def test_unparseable_units(text):
    with pytest.raises(UnitError, match="cannot parse unit"):
        Unit.parse(text)


def test_validation_against_the_model(tiny_resnet):
    assert Unit("layer3", 255).validate(tiny_resnet)
    with pytest.raises(UnitError, match="channel 256 is out of range; layer 'layer3' has 256 channels"):
        Unit("layer3", 256).validate(tiny_resnet)
    with pytest.raises(UnitError, match=r"position \(4,0\) is outside the 4x4 grid"):
        Unit("layer3", 0, (4, 0)).validate(tiny_resnet)
    with pytest.raises(LayerError, match="no layer 'layer9'.*Did you mean"):
        Unit("layer9", 0).validate(tiny_resnet)


def test_read_mean_and_position():
    acts = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(Unit("l", 1).read(acts), acts[:, 1].mean(dim=(1, 2)))
    assert torch.equal(Unit("l", 1, (1, 0)).read(acts), acts[:, 1, 1, 0])


def test_direction_reads_a_projection_and_checks_size(tiny_resnet):
    acts = torch.randn(3, 4, 2, 2)
    d = Direction("l", np.array([1, 0, -1, 0]))
    assert torch.allclose(d.read(acts), acts.mean(dim=(2, 3))[:, 0] - acts.mean(dim=(2, 3))[:, 2])
    with pytest.raises(UnitError, match="has 4 components; the layer has 256 channels"):
        Direction("layer3", np.ones(4)).validate(tiny_resnet)
    with pytest.raises(UnitError, match="non-empty finite"):
        Direction("l", np.array([np.nan]))
