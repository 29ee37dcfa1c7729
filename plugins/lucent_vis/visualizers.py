"""The visualizers: each turns its targets into render jobs (a label, how to read the value, a
Lucent objective) and shares the parameters, batching and the render loop."""

from __future__ import annotations

import zlib
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Sequence

import torch
from lucent.optvis import objectives

from mmneurons.analysis import text_direction
from mmneurons.kinds import Progress, Visualizer, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import FeatureVis
from mmneurons.units import Direction, Unit

from .render import Job, RenderSpec, parse_thresholds, read_baselines, render, resolve_precision
from .param import PARAMETERIZATIONS
from .transform import TRANSFORMS
from .window import windowed

COMMON_PARAMS = (
    Param("steps", "int", 512, min=1, max=100_000, help="optimization steps"),
    Param("lr", "float", 0.02, min=1e-6, max=10.0, help="Adam learning rate (paper: 0.02)"),
    Param("seed", "int", 0, min=0, help="random seed; the same seed gives the same image"),
    Param("batch_size", "int", 0, min=0, max=1024,
          help="images optimized together (0: auto: 32 on GPU; on CPU 16 up to 128 px, else 4)"),
    Param("thresholds", "str", "64,256,1024", help="steps at which to keep snapshots (comma-separated)"),
    Param("parameterization", "str", "fft", choices=tuple(PARAMETERIZATIONS),
          help="fft: Lucid's Fourier image; maco: only the Fourier phase under a natural 1/f magnitude "
               "(it wants a larger lr, about 0.1)"),
    Param("decay", "float", 1.0, min=0.0, max=4.0,
          help="how fast the Fourier scale falls with frequency (Lucid: 1); higher favors large shapes over "
               "fine texture (a blur prior)"),
    Param("transforms", "str", "clip", choices=tuple(TRANSFORMS),
          help="transformation robustness: the paper's (pad, jitter, scale, rotate), strong (wider moves) "
               "or none"),
    Param("window", "bool", False,
          help="one instance: the image is free only inside a centered disk, over random colors outside"),
    Param("alpha", "bool", False, help="optimize an alpha channel over random backgrounds (transparency)"),
    Param("alpha_penalty", "float", 0.5, min=0.0, help="weight of the mean-alpha penalty"),
    Param("image_penalty", "float", 0.0, min=0.0, help="weight of mean((x - 0.5)^2) (paper: 10)"),
    Param("precision", "str", "auto", choices=("auto", "fp32", "bf16"),
          help="bf16: bfloat16 weights (a ResNet tower is copied), autocast and channels_last; "
               "auto: bf16 on GPU, and on CPU for inputs of 160 px and up when the CPU has bf16 "
               "instructions (AMX or AVX-512-BF16), else fp32"),
    Param("redirect_steps", "int", 16, min=0,
          help="first steps with ReLU gradient redirection, used when a target is inactive on the starting image"),
)


class LucentVisualizer(Visualizer):
    """Shared work: validate, split targets into batches, render each batch."""

    extra_params: Sequence[Param] = ()
    #: this visualizer's own defaults for common parameters
    defaults: dict[str, Any] = {}

    @property
    def params(self) -> Sequence[Param]:  # type: ignore[override]
        common = tuple(replace(p, default=self.defaults[p.name]) if p.name in self.defaults else p
                       for p in COMMON_PARAMS)
        return tuple(self.extra_params) + common

    def jobs(self, model: ClipModel, targets: Sequence[Any], values: dict) -> list[Job]:
        raise TypeError(f"{type(self).__name__} must define jobs()")

    def group_objective(self, jobs: Sequence[Job], values: dict) -> Callable | None:
        return None

    def layers_read(self, jobs: Sequence[Job], values: dict) -> set[str]:
        """Every layer the objectives read (the render tower keeps them unfolded for their hooks)."""
        return {job.layer for job in jobs}

    def spec(self, jobs: Sequence[Job], values: dict) -> RenderSpec:
        """The render of ``jobs`` with these parameter values (a subclass may change the
        parameterization, the transform or add objectives here)."""
        return RenderSpec(jobs=jobs, steps=values["steps"], lr=values["lr"], seed=values["seed"],
                          thresholds=parse_thresholds(values["thresholds"]), alpha=values["alpha"],
                          alpha_penalty=values["alpha_penalty"], image_penalty=values["image_penalty"],
                          precision=values["precision"], redirect_steps=values["redirect_steps"],
                          transform=TRANSFORMS[values["transforms"]], parameterization=parameterization(values),
                          extra_objective=self.group_objective(jobs, values), method=self.name, params=dict(values))

    def visualize(self, model: ClipModel, units: Sequence[Any], params: dict | None = None,
                  progress: Progress = no_progress) -> list[FeatureVis]:
        values = self.resolve(params)
        if isinstance(units, (str, Unit, Direction)):
            units = [units]
        if not units:
            raise ValueError(f"visualizer '{self.name}': nothing to visualize")
        jobs = self.jobs(model, list(units), values)
        size = self.batch_size(values, model)
        parse_thresholds(values["thresholds"])  # a bad value fails before any work
        tower = model.kept_tower("render_tower", resolve_precision(model, values["precision"]),
                                 self.layers_read(jobs, values))
        on_gray, on_noise = read_baselines(model, jobs, values["seed"])
        results: list[FeatureVis] = []
        for start in range(0, len(jobs), size):
            batch = slice(start, start + size)
            results += render(model, self.spec(jobs[batch], values), tower=tower,
                              baselines=(on_gray[batch], on_noise[batch]), progress=progress,
                              done=start * values["steps"], total=len(jobs) * values["steps"])
        return results

    def batch_size(self, values: dict, model: ClipModel | None = None) -> int:
        if values["batch_size"]:
            return values["batch_size"]
        if model is not None and model.device.type == "cuda":
            return 32
        # measured on 2 CPU cores (docs/benchmarks.md): small inputs gain from big batches, while at
        # 288 px a batch of 16 no longer fits the caches and is slower per image than a batch of 4
        return 16 if model is None or model.image_size <= 128 else 4


def parameterization(values: dict):
    """The parameterization the values choose (``window`` wraps it in the centered disk)."""
    chosen = partial(PARAMETERIZATIONS[values["parameterization"]], decay=values["decay"])
    return windowed(chosen) if values["window"] else chosen


def _units(model: ClipModel, items: Sequence[Any]) -> list[Unit]:
    return [Unit.parse(item).validate(model) for item in items]


class ChannelVisualizer(LucentVisualizer):
    name = "channel"
    description = ("Maximize a channel's spatially averaged activation (Lucent's channel objective); by default "
                   "one instance in a centered disk (docs/benchmarks.md: recognized more often than a full frame)")
    defaults = {"window": True}

    def jobs(self, model, targets, values):
        jobs = []
        for unit in _units(model, targets):
            plain = Unit(unit.layer, unit.channel)
            jobs.append(Job(str(plain), unit.layer, plain.read,
                            lambda i, u=plain: objectives.channel(u.layer, u.channel, batch=i), str(plain)))
        return jobs


class NeuronVisualizer(LucentVisualizer):
    name = "neuron"
    description = "Maximize one position of a channel (default: the center), Lucent's neuron objective."

    def jobs(self, model, targets, values):
        jobs = []
        for unit in _units(model, targets):
            if unit.position is None:
                _, h, w = model.layer_info(unit.layer).shape
                unit = Unit(unit.layer, unit.channel, (h // 2, w // 2))
            y, x = unit.position
            jobs.append(Job(str(unit), unit.layer, unit.read,
                            lambda i, u=unit, x=x, y=y: objectives.neuron(u.layer, u.channel, x=x, y=y, batch=i),
                            str(unit)))
        return jobs


class NegativeVisualizer(LucentVisualizer):
    name = "negative"
    description = "Minimize a channel's activation: what the unit responds to least."

    def jobs(self, model, targets, values):
        jobs = []
        for unit in _units(model, targets):
            plain = Unit(unit.layer, unit.channel)
            jobs.append(Job(f"-{plain}", unit.layer, plain.read,
                            lambda i, u=plain: -1 * objectives.channel(u.layer, u.channel, batch=i),
                            f"negative:{plain}", minimize=True))
        return jobs


class DirectionVisualizer(LucentVisualizer):
    name = "direction"
    description = "Maximize the projection on a direction in a layer's channel space (Lucent's channel_weight)."
    targets = ("direction",)

    def jobs(self, model, targets, values):
        jobs = []
        for direction in targets:
            if not isinstance(direction, Direction):
                raise ValueError(f"visualizer 'direction' takes Direction objects, got {direction!r}")
            direction.validate(model)
            weight = torch.as_tensor(direction.vector, device=model.device)
            jobs.append(Job(str(direction), direction.layer, direction.read,
                            lambda i, d=direction, w=weight: objectives.channel_weight(d.layer, w, batch=i),
                            f"direction:{direction}:{zlib.crc32(direction.vector.tobytes())}"))
        return jobs


class TextDirectionVisualizer(DirectionVisualizer):
    name = "text_direction"
    description = "Maximize the direction in which a text prompt's image-text logit grows at a layer."
    targets = ("text",)
    extra_params = (Param("layer", "str", "auto", help="layer of the direction ('auto': the last block)"),)

    def jobs(self, model, targets, values):
        layer = model.resolve_layer(values["layer"])
        prompts = [str(t) for t in targets]
        if any(not p.strip() for p in prompts):
            raise ValueError("visualizer 'text_direction': a prompt is empty")
        return super().jobs(model, [text_direction(model, p, layer) for p in prompts], values)


class DiversityVisualizer(LucentVisualizer):
    name = "diversity"
    description = "k different images for each unit: channel objective minus Lucent's diversity term."
    extra_params = (Param("k", "int", 4, min=2, max=64, help="images per unit"),
                    Param("weight", "float", 1.0, min=0.0,
                          help="weight of the diversity term (Lucid used 1e2 on InceptionV1; at CLIP activation "
                               "scales about 1 keeps activations while making the images differ)"))

    def jobs(self, model, targets, values):
        jobs = []
        for unit in _units(model, targets):
            plain = Unit(unit.layer, unit.channel)
            for j in range(values["k"]):
                jobs.append(Job(f"{plain}#{j}", unit.layer, plain.read,
                                lambda i, u=plain: objectives.channel(u.layer, u.channel, batch=i), f"{plain}#{j}",
                                of=str(plain), sample=j))
        return jobs

    def batch_size(self, values, model=None):
        k = values["k"]
        return max(k, super().batch_size(values, model) // k * k)  # a unit's k images stay in one batch

    def group_objective(self, jobs, values):
        k, weight = values["k"], values["weight"]
        terms = []
        for start in range(0, len(jobs), k):
            layer = jobs[start].layer
            term = objectives.diversity(layer)
            terms.append(objectives.Objective(
                lambda T, s=start, term=term: term(lambda name: T(name)[s:s + k])))
        return -weight * sum(terms[1:], start=terms[0])


BASE_VISUALIZERS = (ChannelVisualizer, NeuronVisualizer, NegativeVisualizer, DirectionVisualizer,
                    TextDirectionVisualizer, DiversityVisualizer)
