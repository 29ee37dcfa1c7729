"""The attributor plugins: every registered attributor gets the same cross-cutting tests."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Attribution

from mmneurons.captum import ZeroShotTarget
from mmneurons.models import LayerError
from mmneurons.params import ParamError
from mmneurons.results import AttributionMap
from mmneurons.units import Unit, UnitError

from ..test_captum import _pixels, _unit

FAST = {"ig": {"steps": 8}, "gradient_shap": {"samples": 3}, "smoothgrad": {"samples": 3},
        "occlusion": {"window": 16, "stride": 16}}


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.visual.modules())


def _attributors(registry):
    return registry.attributors()


def test_the_builtin_attributors_are_registered(registry):
    names = {a.name for a in _attributors(registry)}
    assert names == {"ig", "saliency", "input_x_gradient", "gradient_shap", "smoothgrad", "occlusion", "gradcam"}


def test_every_attributor_is_captum_underneath_and_leaves_no_hook(registry, tiny_model):
    unit = _unit(tiny_model)
    label = ZeroShotTarget("moon", ("star", "moon", "ring"))
    before = _hooks(tiny_model)
    for attributor in _attributors(registry):
        assert isinstance(attributor.captum(tiny_model, unit), Attribution), attributor.name
        for target in (unit, label, "prompt:a red star"):
            [result] = attributor.attribute(tiny_model, _pixels(1), target, FAST.get(attributor.name, {}))
            assert isinstance(result, AttributionMap) and result.method == attributor.name
            assert result.attribution.shape[-2:] == (64, 64) and result.heat.shape == (64, 64)
            assert result.overlay.size == (64, 64)
            assert torch.isfinite(torch.from_numpy(result.attribution)).all()
        assert _hooks(tiny_model) == before, attributor.name


def test_no_hook_remains_when_an_attribution_raises(registry, tiny_model, monkeypatch):
    unit = _unit(tiny_model)
    before = _hooks(tiny_model)

    def broken(*args, **kwargs):
        raise RuntimeError("broken in the middle")

    monkeypatch.setattr(tiny_model, "to_grid", broken)
    for attributor in _attributors(registry):
        with pytest.raises(RuntimeError, match="broken in the middle"):
            attributor.attribute(tiny_model, _pixels(1), unit, FAST.get(attributor.name, {}))
        assert _hooks(tiny_model) == before, attributor.name


def test_ig_result_reports_completeness(registry, tiny_resnet):
    ig = registry.get("mmneurons_attributors", "ig")
    [res] = ig.attribute(tiny_resnet, _pixels(1), ZeroShotTarget("moon", ("star", "moon")), {"steps": 64})
    gap = res.target_value - res.baseline_value
    assert abs(res.attribution.sum() - gap) < 2e-3 * max(1, abs(gap))
    assert abs(res.convergence_delta) < 2e-3 * max(1, abs(gap))


def test_bad_input_gives_one_clear_error_each(registry, tiny_resnet):
    ig = registry.get("mmneurons_attributors", "ig")
    gradcam = registry.get("mmneurons_attributors", "gradcam")
    with pytest.raises(LayerError, match="no layer 'layer9'"):
        gradcam.attribute(tiny_resnet, _pixels(1), Unit("layer3", 0), {"layer": "layer9"})
    with pytest.raises(UnitError, match="channel 999 is out of range"):
        ig.attribute(tiny_resnet, _pixels(1), "layer3:999")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\] RGB"):
        ig.attribute(tiny_resnet, torch.rand(1, 1, 64, 64), "layer3:0")
    with pytest.raises(ValueError, match="must be 64x64"):
        ig.attribute(tiny_resnet, torch.rand(1, 3, 50, 50), "layer3:0")
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        ig.attribute(tiny_resnet, torch.rand(1, 3, 64, 64) * 255, "layer3:0")
    with pytest.raises(ValueError, match="label list is empty"):
        ig.attribute(tiny_resnet, _pixels(1), ZeroShotTarget("x", ()))
    with pytest.raises(ParamError, match="parameter 'steps' got 1"):
        ig.attribute(tiny_resnet, _pixels(1), "layer3:0", {"steps": 1})


def test_pil_images_of_any_mode_are_accepted(registry, tiny_resnet):
    from PIL import Image

    saliency = registry.get("mmneurons_attributors", "saliency")
    images = [Image.new("L", (80, 50), 128), Image.new("RGBA", (30, 30), (1, 2, 3, 0))]
    results = saliency.attribute(tiny_resnet, images, "layer3:0")
    assert [r.image.size for r in results] == [(64, 64), (64, 64)]


def test_unit_contributions_add_up_to_the_logit_gap(registry, tiny_model):
    probe = registry.get("mmneurons_probes", "unit_contributions")
    result = probe.run(tiny_model, ZeroShotTarget("moon", ("star", "moon", "ring")), _pixels(2), {"steps": 48})
    assert abs(result.total - result.target_minus_baseline) < 5e-3 * max(1, abs(result.target_minus_baseline))
    assert (result.contributions[:-1] >= result.contributions[1:]).all()
    assert result.table(3)[0]["unit"] == f"{result.layer}:{int(result.channels[0])}"
    with pytest.raises(ValueError, match="not a unit"):
        probe.run(tiny_model, Unit(result.layer, 0), _pixels(1), {})
