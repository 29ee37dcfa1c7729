"""Captum attribution plugins: pixel attributions for a unit, a direction, a zero-shot class or a
free prompt, and unit contributions to a class. Each attributor's ``captum(model, target)`` is
the configured ``captum.attr.Attribution`` object itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from mmneurons.captum import GridGradCam, forward_for, layer_of, parse_target
from mmneurons.images import to_pil, to_rgb
from mmneurons.kinds import Attributor, Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import AttributionMap, UnitContributions
from mmneurons.units import Direction, Unit

BASELINES = ("black", "gray")


def to_batch(model: ClipModel, images: Any) -> tuple[torch.Tensor, list[str]]:
    """PIL images, paths, file-like objects (uploads: named by their ``name``) or a pixel tensor
    -> ``[B, 3, S, S]`` pixels on the model's device, and ids."""
    from mmneurons.images import decode_image, load_image

    if isinstance(images, torch.Tensor):
        pixels = model.check_pixels(images)
        if pixels.min() < 0 or pixels.max() > 1:
            raise ValueError("pixel tensors must hold values in [0, 1] (the model normalizes them itself)")
        return pixels, [f"image-{i}" for i in range(len(pixels))]
    if isinstance(images, (Image.Image, str)) or hasattr(images, "__fspath__"):
        images = [images]
    if hasattr(images, "load") and hasattr(images, "record"):  # an ImageSource
        source = images
        pairs = [(source.load(i), source.record(i).id) for i in range(len(source))]
        return torch.stack([model.pixels(img) for img, _ in pairs]).to(model.device), [i for _, i in pairs]
    images = list(images)
    if not images:
        raise ValueError("no image to attribute")
    ids, tensors = [], []
    for i, item in enumerate(images):
        if isinstance(item, Image.Image):
            img, name = to_rgb(item), f"image-{i}"
        elif hasattr(item, "read"):  # an upload or an open file: its own name, never its repr
            name = Path(str(getattr(item, "name", "") or f"upload-{i}")).name
            img = decode_image(item.getvalue() if hasattr(item, "getvalue") else item.read(), name)
        else:
            img, name = load_image(item), str(item)
        ids.append(name)
        tensors.append(model.pixels(img))
    return torch.stack(tensors).to(model.device), ids


def baseline_like(pixels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "black":
        return torch.zeros_like(pixels)
    if kind == "gray":
        return torch.full_like(pixels, 0.5)
    raise ValueError(f"unknown baseline {kind!r}; baselines: {', '.join(BASELINES)}")


class CaptumAttributor(Attributor):
    """Shared work of every pixel attributor; subclasses say which Captum object and how to call it."""

    params: Sequence[Param] = ()

    def build(self, model: ClipModel, forward: torch.nn.Module, target: Any, values: dict) -> Any:
        raise TypeError(f"{type(self).__name__} must define build()")

    def call(self, attribution: Any, pixels: torch.Tensor, index: int | None, values: dict) -> tuple:
        """(attributions ``[1, C, H, W]``, convergence delta or None) for one image."""
        return attribution.attribute(pixels, target=index), None

    def captum(self, model: ClipModel, target: Any, **values: Any) -> Any:
        values = self.resolve(values)
        forward, _ = forward_for(model, target)
        return self.build(model, forward, parse_target(target), values)

    def attribute(self, model: ClipModel, images: Any, target: Any, params: dict | None = None,
                  progress: Progress = no_progress) -> list[AttributionMap]:
        values = self.resolve(params)
        target = parse_target(target)
        pixels, ids = to_batch(model, images)
        forward, index = forward_for(model, target)
        attribution = self.build(model, forward, target, values)
        results = []
        progress(0, len(pixels), f"{self.name}: {target}")
        with torch.enable_grad(), model.lock:  # callers may run under no_grad (NoiseTunnel, metrics)
            for i in range(len(pixels)):
                x = pixels[i:i + 1]
                attr, delta = self.call(attribution, x, index, values)
                with torch.no_grad():
                    out = forward(x)
                    value = float(out[0, index] if index is not None else out[0])
                    base = values.get("baseline")
                    base_value = None
                    if base in BASELINES:
                        b = forward(baseline_like(x, base))
                        base_value = float(b[0, index] if index is not None else b[0])
                results.append(AttributionMap.build(
                    to_pil(x[0]), attr[0].detach().float().cpu().numpy(), model_id=model.model_id, method=self.name,
                    target=str(target), image_id=ids[i], target_value=value, baseline_value=base_value,
                    convergence_delta=None if delta is None else float(delta.reshape(-1)[0]), params=values))
                progress(i + 1, len(pixels), f"{self.name}: {target}")
        return results


class IntegratedGradientsAttributor(CaptumAttributor):
    name = "ig"
    description = ("Integrated Gradients: path integral of gradients from a baseline; attributions sum to "
                   "f(x) - f(baseline).")
    params = (Param("steps", "int", 50, min=2, max=2048, help="integration steps"),
              Param("baseline", "str", "black", choices=BASELINES, help="the reference image"),
              Param("internal_batch_size", "int", None, min=1, optional=True,
                    help="evaluate the steps in chunks of this size (memory); results do not change"))

    def build(self, model, forward, target, values):
        from captum.attr import IntegratedGradients

        return IntegratedGradients(forward)

    def call(self, attribution, pixels, index, values):
        return attribution.attribute(pixels, baselines=baseline_like(pixels, values["baseline"]), target=index,
                                     n_steps=values["steps"], internal_batch_size=values["internal_batch_size"],
                                     return_convergence_delta=True)


class SaliencyAttributor(CaptumAttributor):
    name = "saliency"
    description = "Saliency: the absolute gradient of the target with respect to each pixel."
    params = (Param("abs", "bool", True, help="take absolute values"),)

    def build(self, model, forward, target, values):
        from captum.attr import Saliency

        return Saliency(forward)

    def call(self, attribution, pixels, index, values):
        return attribution.attribute(pixels, target=index, abs=values["abs"]), None


class InputXGradientAttributor(CaptumAttributor):
    name = "input_x_gradient"
    description = "Input x Gradient: pixels times the gradient (a first-order Taylor term)."

    def build(self, model, forward, target, values):
        from captum.attr import InputXGradient

        return InputXGradient(forward)


class GradientShapAttributor(CaptumAttributor):
    name = "gradient_shap"
    description = "GradientShap: expected gradients over noisy inputs and black/gray baselines."
    params = (Param("samples", "int", 20, min=1, max=1000, help="random samples"),
              Param("stdevs", "float", 0.05, min=0.0, max=1.0, help="noise added to each sample"))

    def build(self, model, forward, target, values):
        from captum.attr import GradientShap

        return GradientShap(forward)

    def call(self, attribution, pixels, index, values):
        baselines = torch.cat([torch.zeros_like(pixels), torch.full_like(pixels, 0.5)])
        return attribution.attribute(pixels, baselines=baselines, target=index, n_samples=values["samples"],
                                     stdevs=values["stdevs"], return_convergence_delta=True)


class SmoothGradAttributor(CaptumAttributor):
    name = "smoothgrad"
    description = "SmoothGrad (Captum NoiseTunnel over Saliency): gradients averaged over noisy copies."
    params = (Param("samples", "int", 16, min=1, max=1000, help="noisy copies"),
              Param("stdevs", "float", 0.1, min=0.0, max=1.0, help="noise level (pixels are in [0, 1])"),
              Param("internal_batch_size", "int", None, min=1, optional=True, help="noisy copies per batch"))

    def build(self, model, forward, target, values):
        from captum.attr import NoiseTunnel, Saliency

        return NoiseTunnel(Saliency(forward))

    def call(self, attribution, pixels, index, values):
        return attribution.attribute(pixels, nt_type="smoothgrad", nt_samples=values["samples"],
                                     stdevs=values["stdevs"], nt_samples_batch_size=values["internal_batch_size"],
                                     target=index), None


class OcclusionAttributor(CaptumAttributor):
    name = "occlusion"
    description = "Occlusion: the target's drop when a gray patch slides over the image."
    params = (Param("window", "int", 8, min=1, max=512, help="side of the occluding patch in pixels"),
              Param("stride", "int", 4, min=1, max=512, help="step between patches in pixels"),
              Param("internal_batch_size", "int", None, min=1, optional=True, help="occluded copies per batch"))

    def build(self, model, forward, target, values):
        from captum.attr import Occlusion

        return Occlusion(forward)

    def call(self, attribution, pixels, index, values):
        w, s = values["window"], values["stride"]
        return attribution.attribute(pixels, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0.5,
                                     target=index, perturbations_per_eval=values["internal_batch_size"] or 1), None


class GradCamAttributor(CaptumAttributor):
    name = "gradcam"
    description = "Grad-CAM at a layer (ResNet maps or ViT patch tokens), upsampled to the image."
    params = (Param("layer", "str", "auto",
                    help="layer to explain ('auto': the target unit's layer, else the last block; for a ViT the "
                         "one before, since its last block's patch tokens do not reach the output)"),
              Param("relu", "bool", True, help="keep only positive evidence"))

    def supports(self, model: ClipModel) -> bool:
        return model.kind in ("resnet", "vit")

    @staticmethod
    def layer_for(model: ClipModel, target: Any, layer: str) -> str:
        """"auto": the target unit's own layer, else the model's default layer."""
        if layer == "auto" and isinstance(target, (Unit, Direction)):
            return target.layer
        return model.resolve_layer(layer)

    def build(self, model, forward, target, values):
        name = self.layer_for(model, target, values["layer"])
        return GridGradCam(forward, layer_of(model, name), model.layout(name))

    def call(self, attribution, pixels, index, values):
        from captum.attr import LayerAttribution

        cam = attribution.attribute(pixels, target=index, relu_attributions=values["relu"])
        return LayerAttribution.interpolate(cam, tuple(pixels.shape[-2:]), "bilinear"), None


# -- unit contributions to a class ----------------------------------------------------------------
class UnitContributionsProbe(Probe):
    name = "unit_contributions"
    description = "Which units of a layer carry a zero-shot class or prompt logit (layer Integrated Gradients)."
    targets = ("class",)
    params = (Param("layer", "str", "auto", help="layer whose units are ranked ('auto': the last block)"),
              Param("steps", "int", 32, min=2, max=1024, help="integration steps"),
              Param("baseline", "str", "black", choices=BASELINES, help="the reference image"),
              Param("internal_batch_size", "int", None, min=1, optional=True, help="steps per batch"))

    def parse_target(self, model: ClipModel, target: Any) -> Any:
        return parse_target(target)

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> UnitContributions:
        from captum.attr import LayerIntegratedGradients

        if isinstance(target, (Unit, Direction)):
            raise ValueError("unit contributions explain a class or a prompt, not a unit: give a ZeroShotTarget "
                             "or 'prompt:...'")
        layer = GradCamAttributor.layer_for(model, target, values["layer"])
        layout = model.layout(layer)
        forward, index = forward_for(model, target)
        lig = LayerIntegratedGradients(forward, layer_of(model, layer))
        pixels, _ = to_batch(model, source)
        total = np.zeros(model.layer_info(layer).channels)
        gap = 0.0
        with torch.enable_grad(), model.lock:
            for i in range(len(pixels)):
                x = pixels[i:i + 1]
                base = baseline_like(x, values["baseline"])
                attr = lig.attribute(x, baselines=base, target=index, n_steps=values["steps"],
                                     internal_batch_size=values["internal_batch_size"])
                total += layout.channel_totals(attr)[0].detach().cpu().numpy()
                with torch.no_grad():
                    fx, fb = forward(x), forward(base)
                    gap += float((fx[0, index] - fb[0, index]) if index is not None else (fx[0] - fb[0]))
                progress(i + 1, len(pixels), f"{self.name}: {target}")
        order = np.argsort(-total)
        return UnitContributions(model_id=model.model_id, layer=layer, target=str(target), channels=order,
                                 contributions=total[order], total=float(total.sum()),
                                 target_minus_baseline=gap, images=len(pixels))


ATTRIBUTORS = (IntegratedGradientsAttributor, SaliencyAttributor, InputXGradientAttributor, GradientShapAttributor,
               SmoothGradAttributor, OcclusionAttributor, GradCamAttributor)
