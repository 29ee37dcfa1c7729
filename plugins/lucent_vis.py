"""Feature visualization on Lucent's building blocks, made right for CLIP.

Lucent's ``render_vis`` is unfit for CLIP as it is (ImageNet normalization, hooks on every module
that are never removed, ``cuda:0``, the whole network every step). This module keeps Lucent's
objectives (composable values, evaluated on our hook store) and its FFT spectrum scaling and color
decorrelation constants, and runs its own loop:

- the model's own normalization and input size; the forward pass stops after the deepest layer
  the objective reads, and every hook is removed afterwards;
- many targets in one optimization (one image per target); each image has its own random
  stream seeded by (seed, target), and Adam is per element, so a target's image does not depend
  on what it is batched with;
- transformation robustness as in the paper's reference code (pad, jitter, scale 0.67-1.03,
  rotation +-20 degrees, jitter), drawn per image from a seeded generator, on the model's device;
- ReLU gradient redirection for the first steps (Lucid's ``relu_gradient_override``), so a unit
  that is inactive on the starting image still gets a gradient; units that never activate are
  reported in the result's warnings;
- optional alpha channel composited over random backgrounds, with a penalty on mean alpha;
- a ResNet tower is rendered through a private copy with its BatchNorms folded into the
  convolutions, in bf16 + channels_last when ``precision`` says so, and on CPU with the weights
  packed for oneDNN and the ReLUs fused into the convolutions (:mod:`mmneurons.tower`): the
  shared model is never changed, and the reported values are read on it in float32 from the
  8-bit images that are saved.
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lucent.optvis import objectives
from lucent.optvis.param.color import color_correlation_normalized
from lucent.optvis.param.spatial import rfft2d_freqs
from PIL import Image

from mmneurons.activations import capture_layers, layer_gradient, unit_activations
from mmneurons.hardware import auto_precision
from mmneurons.images import to_pil
from mmneurons.kinds import Progress, Visualizer, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param, ParamError, resolve_params
from mmneurons.results import FeatureVis
from mmneurons.tower import fast_tower
from mmneurons.units import Direction, Unit

COMMON_PARAMS = (
    Param("steps", "int", 512, min=1, max=100_000, help="optimization steps"),
    Param("lr", "float", 0.02, min=1e-6, max=10.0, help="Adam learning rate (paper: 0.02)"),
    Param("seed", "int", 0, min=0, help="random seed; the same seed gives the same image"),
    Param("batch_size", "int", 0, min=0, max=1024,
          help="images optimized together (0: auto: 32 on GPU; on CPU 16 up to 128 px, else 4)"),
    Param("thresholds", "str", "64,256,1024", help="steps at which to keep snapshots (comma-separated)"),
    Param("transforms", "str", "clip", choices=("clip", "none"),
          help="transformation robustness: the paper's (pad, jitter, scale, rotate) or none"),
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


# -- parameterization: Lucent's FFT scaling and color decorrelation, on the model's device ----------
class FFTImage:
    """A batch of images as scaled Fourier spectra, decorrelated colors and a sigmoid (Lucid's param)."""

    def __init__(self, n: int, size: int, channels: int, seeds: Sequence[int], device: torch.device,
                 decorrelate: bool = True, sd: float = 0.01) -> None:
        freqs = rfft2d_freqs(size, size)
        self.size, self.channels, self.decorrelate = size, channels, decorrelate
        scale = 1.0 / np.maximum(freqs, 1.0 / size)
        self.scale = torch.tensor(scale, dtype=torch.float32, device=device)[None, None, ..., None]
        spectra = [torch.randn((channels,) + freqs.shape + (2,), generator=torch.Generator().manual_seed(s)) * sd
                   for s in seeds]
        self.spectrum = torch.stack(spectra).to(device).requires_grad_(True)
        self.color = torch.tensor(color_correlation_normalized.T, device=device)

    def __call__(self) -> torch.Tensor:
        # Always float32, also under bf16 autocast: the image optimized is the image saved, on every
        # CPU (a bf16 color matmul rounds differently on AMX, AVX-512-bf16 and AVX2 kernels)
        with torch.autocast(self.scale.device.type, enabled=False):
            return self._image()

    def _image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.spectrum)
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho")[:, :, :self.size, :self.size] / 4.0
        if self.decorrelate and self.channels == 3:
            image = (image.permute(0, 2, 3, 1) @ self.color).permute(0, 3, 1, 2)
        return torch.sigmoid(image)


def target_seed(seed: int, key: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63)


# -- transformation robustness, one affine warp per image ----------------------------------------
def robust_transform(x: torch.Tensor, gens: Sequence[torch.Generator], kind: str) -> torch.Tensor:
    """The paper's pad 2 / jitter 4 / scale 0.67-1.03 / rotate +-20 / jitter 2, as one warp per image
    with gray (0.5) fill. Pixel amounts are for 224 px and scale with the image."""
    if kind == "none":
        return x
    b, _, h, w = x.shape
    px = 2.0 / w  # one pixel in normalized coordinates
    unit = max(1.0, w / 224)
    thetas = []
    for g in gens:
        r = torch.rand(6, generator=g)
        scale = 0.67 + 0.36 * float(r[0])
        angle = math.radians(-20 + 40 * float(r[1]))
        tx = ((float(r[2]) - 0.5) * 4 + (float(r[3]) - 0.5) * 2) * unit * px
        ty = ((float(r[4]) - 0.5) * 4 + (float(r[5]) - 0.5) * 2) * unit * px
        pad = 1 + 4 * unit / w  # pad 2 on each side, then crop back to size
        cos, sin = math.cos(angle) / scale * pad, math.sin(angle) / scale * pad
        thetas.append([[cos, -sin, tx], [sin, cos, ty]])
    theta = torch.tensor(thetas, dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


# -- ReLU gradient redirection -------------------------------------------------------------------
class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient, for an example where nothing gets through, passes wherever it would
    raise the input (Lucid's ``redirected_relu_grad``).

    Built for speed, as it runs at every ReLU: in place where the module it replaces is, the plain
    gradient from the fused ``threshold_backward``, one per-example check (Lucid's: is the plain
    gradient's norm zero?), and the redirected gradient computed only for the examples that need
    it. For such an example the plain gradient is zero everywhere, so no gradient arrives where
    the output is positive, and Lucid's rule (drop the gradient where ``x < 0`` and it is positive)
    reduces to ``min(grad, 0)``. The output (not the input) is saved, so ``x == 0`` counts as
    negative: a measure-zero difference.
    """

    @staticmethod
    def forward(ctx, x, inplace=False):
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        relu_grad = torch.ops.aten.threshold_backward(grad, out, 0)
        if relu_grad.ndim == 4 and relu_grad.is_contiguous(memory_format=torch.channels_last):
            flat = relu_grad.permute(0, 2, 3, 1).reshape(len(relu_grad), -1)  # a view, no copy
        else:
            flat = relu_grad.reshape(len(relu_grad), -1)
        # Lucid's test, squared norm > 0, as a batched dot product: a matrix kernel, several times faster
        # on CPU than any elementwise reduction (abs/amax/any) over the same memory
        dead = ~(torch.bmm(flat.unsqueeze(1), flat.unsqueeze(2)).view(-1) > 0)
        if bool(dead.any()):
            for b in dead.nonzero()[:, 0].tolist():  # in place per example: no gather/scatter copies
                torch.clamp(grad[b], max=0, out=relu_grad[b])
        return relu_grad, None


def _redirected_relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return _RedirectedReLU.apply(x, inplace)  # positional: torch 2.11's ``apply`` takes no keywords


@contextmanager
def redirected_relus(model: ClipModel, enabled: bool) -> Iterator[None]:
    """Swap every ``nn.ReLU`` of the visual tower for the redirected one; always restored."""
    if not enabled:
        yield
        return
    relus = [m for m in model.visual.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        for m in relus:
            m.forward = partial(_redirected_relu, inplace=m.inplace)
        yield
    finally:
        for m in relus:
            del m.forward  # back to the class's forward


def resolve_precision(model: ClipModel, precision: str) -> str:
    return auto_precision(model.device, model.image_size) if precision == "auto" else precision


@contextmanager
def precision_context(model: ClipModel, precision: str) -> Iterator[None]:
    """bf16 autocast (the weights and memory format come with :func:`fast_tower`'s copy)."""
    if resolve_precision(model, precision) == "fp32":
        yield
        return
    with torch.autocast(model.device.type, dtype=torch.bfloat16):
        yield


# -- the optimization ----------------------------------------------------------------------------
class Job:
    """One image to render: a label, how to read its value, its Lucent objective, its seed key."""

    def __init__(self, label: str, layer: str, read: Callable[[torch.Tensor], torch.Tensor],
                 objective: Callable[[int], Any], key: str, minimize: bool = False) -> None:
        self.label, self.layer, self.read, self.objective, self.key, self.minimize = (
            label, layer, read, objective, key, minimize)


def _thresholds(text: str, steps: int) -> list[int]:
    try:
        values = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise ParamError(f"parameter 'thresholds' got {text!r}; allowed: comma-separated step numbers") from None
    return [t for t in values if 0 < t < steps] + [steps]


def _to_pil(x: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    image = to_pil(x)
    if alpha is not None:
        image.putalpha(to_pil(alpha.expand(3, -1, -1)).convert("L"))
    return image


def render(model: ClipModel, jobs: Sequence[Job], values: dict, extra_objective: Callable | None = None,
           progress: Progress = no_progress, done: int = 0, total: int | None = None, method: str = "",
           tower: ClipModel | None = None,
           baselines: tuple[Sequence[float], Sequence[float]] | None = None) -> list[FeatureVis]:
    """Optimize one image per job in a single batch, through ``tower`` (default: a new
    :func:`fast_tower` of ``model``); the reported activations are read on ``model`` itself, in
    float32, from the 8-bit images that are saved (so reading a saved PNG back gives the same value).
    ``baselines``: the jobs' values on the gray and noise images, if already read (:func:`read_baselines`)."""
    steps, size, device = values["steps"], model.image_size, model.device
    layers = sorted({job.layer for job in jobs})
    seeds = [target_seed(values["seed"], job.key) for job in jobs]
    rgb = FFTImage(len(jobs), size, 3, seeds, device)
    alpha = FFTImage(len(jobs), size, 1, [s + 1 for s in seeds], device, decorrelate=False) if values["alpha"] else None
    params = [rgb.spectrum] + ([alpha.spectrum] if alpha else [])
    opt = torch.optim.Adam(params, lr=values["lr"])
    gens = [torch.Generator().manual_seed(s + 2) for s in seeds]
    objective = sum((job.objective(i) for i, job in enumerate(jobs)), start=objectives.Objective(lambda T: 0))
    if extra_objective is not None:
        objective = objective + extra_objective
    thresholds = _thresholds(values["thresholds"], steps)
    snapshots: list[list[Image.Image]] = [[] for _ in jobs]
    losses = []
    total = total or len(jobs) * steps
    redirect = False  # decided after the first step: only needed when a target starts inactive
    if tower is None:
        tower = fast_tower(model, resolve_precision(model, values["precision"]), keep=layers)
    with tower.lock, precision_context(model, values["precision"]):
        for step in range(1, steps + 1):
            with redirected_relus(tower, redirect and step <= values["redirect_steps"]):
                x = colors = rgb()
                if alpha is not None:
                    a = alpha()
                    background = torch.rand(len(jobs), 3, 1, 1, generator=gens[0]).to(device)
                    x = x * a + background * (1 - a)
                acts = capture_layers(tower, robust_transform(x, gens, values["transforms"]), layers)
                if step == 1 and model.kind == "resnet" and values["redirect_steps"] > 1:
                    with torch.no_grad():  # exactly 0: what a ReLU output reads when nothing gets through
                        redirect = any(not job.minimize and float(job.read(acts[job.layer][i:i + 1].float())[0]) == 0
                                       for i, job in enumerate(jobs))
                loss = objective(lambda name: acts[name].float())
                if values["image_penalty"]:
                    loss = loss + values["image_penalty"] * ((colors - 0.5) ** 2).mean()
                if alpha is not None:
                    loss = loss + values["alpha_penalty"] * a.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()))
            if step in thresholds:
                with torch.no_grad():
                    final_rgb, final_a = rgb(), (alpha() if alpha else None)
                for i in range(len(jobs)):
                    snapshots[i].append(_to_pil(final_rgb[i], final_a[i] if final_a is not None else None))
            progress(done + step * len(jobs), total, f"{method}: step {step}/{steps}")
    reached = _reached(model, jobs, _saved_colors([s[-1] for s in snapshots], device))
    on_gray, on_noise = baselines if baselines is not None else read_baselines(model, jobs, values["seed"])
    redirected = values["redirect_steps"] if redirect else 0
    results = []
    for i, job in enumerate(jobs):
        warnings = target_warnings(job, reached[i], on_gray[i], on_noise[i], model.kind, redirected)
        results.append(FeatureVis(
            model_id=model.model_id, method=method, target=job.label, image=snapshots[i][-1], snapshots=snapshots[i],
            thresholds=thresholds, activation=reached[i], activation_gray=on_gray[i], activation_noise=on_noise[i],
            loss_curve=np.array(losses, dtype=np.float32), params=dict(values), warnings=warnings))
    return results


def _values(model: ClipModel, jobs: Sequence[Job], images: torch.Tensor) -> torch.Tensor:
    """``[len(images), len(jobs)]`` values, in float32 on the model itself (a bf16 read was 23% off
    on a small projection); channels_last input, so a ResNet runs its BatchNorms and average pools
    in that layout (6 RN50x4 images: 1.50 s against 2.07 s in NCHW, docs/benchmarks.md)."""
    with torch.no_grad():
        return unit_activations(model, images.float().contiguous(memory_format=torch.channels_last), jobs)


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


def _saved_colors(images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """The saved images' color channels as pixels (alpha dropped): what a reader of the PNG gets."""
    arrays = [np.asarray(image.convert("RGB"), np.float32) / 255 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device)


def _reached(model: ClipModel, jobs: Sequence[Job], final: torch.Tensor) -> list[float]:
    return _values(model, jobs, final).diagonal().tolist()  # job i's value on its own image i


def read_baselines(model: ClipModel, jobs: Sequence[Job], seed: int) -> tuple[list[float], list[float]]:
    """Each job's value on a gray image and on a seeded noise image: one pass of two images, shared
    by every batch of a call (they depend on the seed, not on the batch)."""
    size = model.image_size
    gray = torch.full((1, 3, size, size), 0.5, device=model.device)
    noise = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(model.device)
    values = _values(model, jobs, torch.cat([gray, noise]))
    return values[0].tolist(), values[1].tolist()


# -- the visualizers -----------------------------------------------------------------------------
class LucentVisualizer(Visualizer):
    """Shared work: validate, split targets into batches, render each batch."""

    extra_params: Sequence[Param] = ()

    @property
    def params(self) -> Sequence[Param]:  # type: ignore[override]
        return tuple(self.extra_params) + COMMON_PARAMS

    def jobs(self, model: ClipModel, targets: Sequence[Any], values: dict) -> list[Job]:
        raise TypeError(f"{type(self).__name__} must define jobs()")

    def group_objective(self, jobs: Sequence[Job], values: dict) -> Callable | None:
        return None

    def visualize(self, model: ClipModel, units: Sequence[Any], params: dict | None = None,
                  progress: Progress = no_progress) -> list[FeatureVis]:
        values = resolve_params(self.params, params or {}, owner=f"visualizer '{self.name}'")
        if isinstance(units, (str, Unit, Direction)):
            units = [units]
        if not units:
            raise ValueError(f"visualizer '{self.name}': nothing to visualize")
        jobs = self.jobs(model, list(units), values)
        size = self.batch_size(values, model)
        tower = fast_tower(model, resolve_precision(model, values["precision"]), keep={job.layer for job in jobs})
        on_gray, on_noise = read_baselines(model, jobs, values["seed"])
        results: list[FeatureVis] = []
        for start in range(0, len(jobs), size):
            batch = slice(start, start + size)
            results += render(model, jobs[batch], values, self.group_objective(jobs[batch], values), progress,
                              done=start * values["steps"], total=len(jobs) * values["steps"], method=self.name,
                              tower=tower, baselines=(on_gray[batch], on_noise[batch]))
        return results

    def batch_size(self, values: dict, model: ClipModel | None = None) -> int:
        if values["batch_size"]:
            return values["batch_size"]
        if model is not None and model.device.type == "cuda":
            return 32
        # measured on 2 CPU cores (docs/benchmarks.md): small inputs gain from big batches, while at
        # 288 px a batch of 16 no longer fits the caches and is slower per image than a batch of 4
        return 16 if model is None or model.image_size <= 128 else 4


def _units(model: ClipModel, items: Sequence[Any]) -> list[Unit]:
    return [Unit.parse(item).validate(model) for item in items]


class ChannelVisualizer(LucentVisualizer):
    name = "channel"
    description = "Maximize a channel's spatially averaged activation (Lucent's channel objective)."

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


def text_direction(model: ClipModel, prompt: str, layer: str) -> Direction:
    """The direction in ``layer``'s channel space along which ``prompt``'s image-text logit grows,
    measured at a gray image (the paper's zero-shot neuron search)."""
    from mmneurons.captum import SimilarityForward

    score = SimilarityForward(model, prompt)
    gray = torch.full((1, 3, model.image_size, model.image_size), 0.5, device=model.device)
    grad = layer_gradient(model, gray, layer, lambda emb: score.scale * F.normalize(emb, dim=-1) @ score.text)
    vector = grad.mean(dim=(2, 3))[0]
    norm = float(vector.norm())
    if norm == 0:
        raise ValueError(f"the logit of {prompt!r} does not depend on layer '{layer}' at a gray image")
    return Direction(layer, (vector / norm).cpu().numpy(), label=f"text:{prompt}@{layer}")


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
                                lambda i, u=plain: objectives.channel(u.layer, u.channel, batch=i), f"{plain}#{j}"))
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


VISUALIZERS = (ChannelVisualizer, NeuronVisualizer, NegativeVisualizer, DirectionVisualizer,
               TextDirectionVisualizer, DiversityVisualizer)
