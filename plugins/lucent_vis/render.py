"""The render loop: many targets optimized together, one image per target.

What to render is one :class:`RenderSpec`: the jobs, the optimization settings, and the
parameterization and transform to use, so a new parameterization, transform or objective is a
new small module that builds a spec, with no edit here. Each image has its own random stream
seeded by (seed, target) and Adam is per element, so a target's image does not depend on what it
is batched with. The forward pass stops after the deepest layer read; the images are optimized
through the model's render tower (a private, folded copy, kept between calls: ``model.kept_tower``);
the reported values are read on the model itself in float32 from the 8-bit images that are saved.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from lucent.optvis import objectives
from PIL import Image

from mmneurons.activations import capture_layers, unit_activations
from mmneurons.hardware import resolve_precision as hardware_precision
from mmneurons.images import to_pil
from mmneurons.kinds import Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import ParamError
from mmneurons.results import FeatureVis

from . import redirect
from .param import FFTImage, ParameterizationFactory
from .transform import Transform, paper_transform


class Job:
    """One image to render: a label, how to read its value, its Lucent objective, its seed key;
    ``of``/``sample`` when it is one of several images of one target."""

    def __init__(self, label: str, layer: str, read: Callable[[torch.Tensor], torch.Tensor],
                 objective: Callable[[int], Any], key: str, minimize: bool = False, of: str = "",
                 sample: int | None = None) -> None:
        self.label, self.layer, self.read, self.objective, self.key, self.minimize = (
            label, layer, read, objective, key, minimize)
        self.of, self.sample = of or label, sample


class LayerReader:
    """What an objective reads from one forward pass: ``T(name)``, a layer's activations in float32
    (Lucent's interface), and ``T.gradient(value, name)``, the gradient of ``value`` with respect
    to a layer, laid out like ``T(name)``. The gradient is taken at the layer's raw output, the
    tensor later layers are computed from: neither a bf16 tower's float32 copy nor a ViT block's
    grid lies on that path."""

    def __init__(self, acts: dict[str, torch.Tensor], layout: Callable[[str], Callable]) -> None:
        self._acts, self._layout = acts, layout

    def __call__(self, name: str) -> torch.Tensor:
        return self._acts[name].float()

    def gradient(self, value: torch.Tensor, name: str) -> torch.Tensor | None:
        """``d value / d layer`` (None when ``value`` does not depend on the layer); the graph is kept."""
        raw = getattr(self._acts, "raw", {}).get(name, self._acts[name])
        (grad,) = torch.autograd.grad(value, raw, retain_graph=True, allow_unused=True)
        return None if grad is None else self._layout(name)(grad).float()


@dataclass
class RenderSpec:
    """Everything one render needs besides the model. ``params`` is recorded with each result."""

    jobs: Sequence[Job]
    steps: int = 512
    lr: float = 0.02
    seed: int = 0
    thresholds: Sequence[int] = (64, 256, 1024)
    alpha: bool = False
    alpha_penalty: float = 0.5
    image_penalty: float = 0.0
    precision: str = "auto"
    redirect_steps: int = 16
    parameterization: ParameterizationFactory = FFTImage
    transform: Transform = paper_transform
    extra_objective: Callable | None = None
    #: layers ``extra_objective`` reads besides the jobs' own (captured in the same pass)
    extra_layers: Sequence[str] = ()
    method: str = ""
    params: dict = field(default_factory=dict)

    def snapshot_steps(self) -> list[int]:
        """The steps with a snapshot: the thresholds below ``steps``, and the last step."""
        return [t for t in sorted(set(self.thresholds)) if 0 < t < self.steps] + [self.steps]


def parse_thresholds(text: str) -> list[int]:
    try:
        return sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise ParamError(f"parameter 'thresholds' got {text!r}; allowed: comma-separated step numbers") from None


def target_seed(seed: int, key: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63)


def resolve_precision(model: ClipModel, precision: str) -> str:
    return hardware_precision(model.device, model.image_size, precision)


@contextmanager
def precision_context(model: ClipModel, precision: str) -> Iterator[None]:
    """bf16 autocast (the weights and memory format come with the render tower's copy)."""
    if resolve_precision(model, precision) == "fp32":
        yield
        return
    with torch.autocast(model.device.type, dtype=torch.bfloat16):
        yield


def _to_pil(x: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    image = to_pil(x)
    if alpha is not None:
        image.putalpha(to_pil(alpha.expand(3, -1, -1)).convert("L"))
    return image


def render(model: ClipModel, spec: RenderSpec, *, tower: ClipModel | None = None,
           baselines: tuple[Sequence[float], Sequence[float]] | None = None, progress: Progress = no_progress,
           done: int = 0, total: int | None = None) -> list[FeatureVis]:
    """Optimize one image per job of ``spec`` in a single batch, through ``tower`` (default: the
    model's kept render tower, ``model.kept_tower``). ``baselines``: the jobs' values on the gray
    and noise images, if already read (:func:`read_baselines`)."""
    jobs, steps, size, device = spec.jobs, spec.steps, model.image_size, model.device
    layers = sorted({job.layer for job in jobs} | set(spec.extra_layers))
    seeds = [target_seed(spec.seed, job.key) for job in jobs]
    rgb = spec.parameterization(len(jobs), size, 3, seeds, device)
    alpha = spec.parameterization(len(jobs), size, 1, [s + 1 for s in seeds], device, decorrelate=False) \
        if spec.alpha else None
    opt = torch.optim.Adam(rgb.parameters() + (alpha.parameters() if alpha else []), lr=spec.lr)
    gens = [torch.Generator().manual_seed(s + 2) for s in seeds]
    objective = sum((job.objective(i) for i, job in enumerate(jobs)), start=objectives.Objective(lambda T: 0))
    if spec.extra_objective is not None:
        objective = objective + spec.extra_objective
    thresholds = spec.snapshot_steps()
    snapshots: list[list[Image.Image]] = [[] for _ in jobs]
    losses = []
    total = total or len(jobs) * steps
    redirecting = False  # decided after the first step: only needed when a target starts inactive
    if tower is None:
        tower = model.kept_tower("render_tower", resolve_precision(model, spec.precision), layers)
    with tower.lock, precision_context(model, spec.precision):
        for step in range(1, steps + 1):
            with redirect.redirected_relus(tower, redirecting and step <= spec.redirect_steps):
                x = colors = rgb()
                if alpha is not None:
                    a = alpha()
                    background = torch.rand(len(jobs), 3, 1, 1, generator=gens[0]).to(device)
                    x = x * a + background * (1 - a)
                acts = capture_layers(tower, spec.transform(x, gens), layers)
                if step == 1 and model.kind == "resnet" and spec.redirect_steps > 1:
                    with torch.no_grad():  # exactly 0: what a ReLU output reads when nothing gets through
                        redirecting = any(
                            not job.minimize and float(job.read(acts[job.layer][i:i + 1].float())[0]) == 0
                            for i, job in enumerate(jobs))
                loss = objective(LayerReader(acts, tower.layout))
                if spec.image_penalty:
                    loss = loss + spec.image_penalty * ((colors - 0.5) ** 2).mean()
                if alpha is not None:
                    loss = loss + spec.alpha_penalty * a.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()))
            if step in thresholds:
                with torch.no_grad():
                    final_rgb, final_a = rgb(), (alpha() if alpha else None)
                for i in range(len(jobs)):
                    snapshots[i].append(_to_pil(final_rgb[i], final_a[i] if final_a is not None else None))
            progress(done + step * len(jobs), total, f"{spec.method}: step {step}/{steps}")
    reached = _values(model, jobs, _saved_colors([s[-1] for s in snapshots], device)).diagonal().tolist()
    on_gray, on_noise = baselines if baselines is not None else read_baselines(model, jobs, spec.seed)
    redirected = spec.redirect_steps if redirecting else 0
    results = []
    for i, job in enumerate(jobs):
        warnings = target_warnings(job, reached[i], on_gray[i], on_noise[i], model.kind, redirected)
        results.append(FeatureVis(
            model_id=model.model_id, method=spec.method, target=job.label, of=job.of, sample=job.sample,
            image=snapshots[i][-1], snapshots=snapshots[i], thresholds=thresholds, activation=reached[i],
            activation_gray=on_gray[i], activation_noise=on_noise[i], loss_curve=np.array(losses, dtype=np.float32),
            params=dict(spec.params), warnings=warnings))
    return results


def _values(model: ClipModel, jobs: Sequence[Job], images: torch.Tensor) -> torch.Tensor:
    """``[len(images), len(jobs)]`` values, in float32 on the model itself (a bf16 read was off on a
    small projection); channels_last input, so a ResNet runs its BatchNorms and average pools in
    that layout (faster: docs/benchmarks.md)."""
    with torch.no_grad():
        return unit_activations(model, images.float().contiguous(memory_format=torch.channels_last), jobs)


def _saved_colors(images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """The saved images' color channels as pixels (alpha dropped): what a reader of the PNG gets."""
    arrays = [np.asarray(image.convert("RGB"), np.float32) / 255 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device)


def read_baselines(model: ClipModel, jobs: Sequence[Job], seed: int) -> tuple[list[float], list[float]]:
    """Each job's value on a gray image and on a seeded noise image: one pass of two images, shared
    by every batch of a call (they depend on the seed, not on the batch)."""
    size = model.image_size
    gray = torch.full((1, 3, size, size), 0.5, device=model.device)
    noise = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(model.device)
    values = _values(model, jobs, torch.cat([gray, noise]))
    return values[0].tolist(), values[1].tolist()


def target_warnings(job: Job, reached: float, on_gray: float, on_noise: float, kind: str,
                    redirected: int) -> list[str]:
    """What a user must know about a render that did not move its target past the baselines, true
    for the target at hand: ReLUs are named only where they exist (ResNet towers) and redirection
    only where it was used (``redirected`` steps)."""
    if job.minimize:
        floor = min(on_gray, on_noise)
        if reached < floor:
            return []
        why = (": a ReLU output cannot go below 0, and this unit is already 0 there"
               if kind == "resnet" and floor <= 0 else "")
        return [f"{job.label} did not fall below its value on gray/noise images ({floor:.4g}){why}"]
    if reached > max(on_gray, on_noise):
        return []
    if redirected:
        return [f"{job.label} never rose above its value on gray/noise images: the unit may be dead for this "
                f"model (its ReLU gradients were redirected for {redirected} steps)"]
    return [f"{job.label} never rose above its value on gray/noise images ({max(on_gray, on_noise):.4g}); "
            f"try more steps or another seed"]
