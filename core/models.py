"""The CLIP model wrapper every plugin works on, and loading models by id.

All image inputs are pixels in [0, 1] at the model's input size; the wrapper applies the model's
own normalization inside ``encode_image``/``forward_visual``. That keeps Captum baselines (zeros =
black), feature-visualization parameterizations and our image pipeline in one pixel space.
"""

from __future__ import annotations

import copy
import difflib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from PIL import Image
from torch import nn

from .errors import LayerError, ModelLoadError  # noqa: F401 - raised here, defined light

if TYPE_CHECKING:  # pragma: no cover
    from .registry import PluginRegistry

#: The model used when none is named: the embedded demo model, which works offline.
DEFAULT_MODEL_ID = "demo:shapes"


@dataclass(frozen=True)
class GridLayout:
    """Turns a layer's raw output into canonical ``[B, C, H, W]`` activations.

    ResNet maps are already so; pooled outputs become ``[B, C, 1, 1]``; ViT block outputs
    (``tokens``; sequence-first unless ``batch_first``) drop the prefix tokens and lay the patch
    tokens on the ``grid``. A plain value, so Captum neuron selectors built on it pickle.
    """

    tokens: bool = False
    batch_first: bool = True
    grid: tuple[int, int] = (0, 0)

    def __call__(self, output: Any, name: str = "layer") -> torch.Tensor:
        if isinstance(output, (tuple, list)):
            output = output[0]
        if output.ndim == 4:
            return output
        if output.ndim == 2:
            return output[:, :, None, None]
        if output.ndim == 3:
            if self.tokens:
                if not self.batch_first:
                    output = output.transpose(0, 1)
                gh, gw = self.grid
                patches = output[:, output.shape[1] - gh * gw:, :]
                return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], gh, gw)
            return output.transpose(1, 2)[:, :, None, :]
        raise LayerError(f"layer '{name}' returns a {output.ndim}-d tensor, which cannot be laid out as units")

    def channel_totals(self, output: Any) -> torch.Tensor:
        """``[B, C]``: each channel summed over every position, prefix (class) tokens included.

        Use this, not the grid, when totals must add up (layer attributions' completeness): a ViT's
        output flows through its class token, which the grid leaves out.
        """
        if isinstance(output, (tuple, list)):
            output = output[0]
        if output.ndim == 3 and self.tokens:
            return output.sum(dim=1) if self.batch_first else output.sum(dim=0)
        return self(output).sum(dim=(2, 3))


@dataclass(frozen=True)
class LayerInfo:
    """A hookable layer of the visual tower and its canonical output shape (C, H, W)."""

    name: str
    shape: tuple[int, int, int]

    @property
    def channels(self) -> int:
        return self.shape[0]


def default_model_id() -> str:
    """The default model id (``MMNEURONS_DEFAULT_MODEL`` overrides the embedded demo model)."""
    return os.environ.get("MMNEURONS_DEFAULT_MODEL", DEFAULT_MODEL_ID)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available, else CPU; an explicit ``device`` wins."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', ...") from exc
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (chosen.index or 0) >= count:
            have = f"this machine has {count} CUDA device{'s' if count != 1 else ''}" if count else \
                "no CUDA device is available here"
            raise ModelLoadError(f"device {device!r}: {have}; use --device cpu (or leave --device out)")
    return chosen


class ClipModel:
    """A CLIP model with what interpretability work needs next to it.

    The wrapped model is put in eval mode and its weights are frozen (``requires_grad=False``):
    gradients flow to inputs and activations only, which is all interpretability needs and saves
    the memory and time of weight gradients.

    Args:
        model: an open_clip ``CLIP``-like module with ``visual``, ``encode_image``, ``encode_text``
            and ``logit_scale``.
        tokenizer: ``texts -> LongTensor[N, context]``.
        model_id: the id it was loaded from (``provider:spec``).
        image_size: input side length in pixels.
        mean, std: the model's own normalization (per RGB channel).
        device: where the model lives.
        meta: what the provider knows about the model. Keys the front ends read:
            ``templates`` (zero-shot prompt templates), ``featured_units`` (units worth seeing
            first, best first: the app opens on the first), ``featured_plugins`` (the plugins whose
            results the app shows for it without a click), ``sha256`` (the weights' hash).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        *,
        model_id: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        meta: dict | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.meta = dict(meta or {})
        self._mean_t = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std_t = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self._layers: list[LayerInfo] | None = None
        #: serializes forward/backward work when one model is shared between threads (the app)
        self.lock = threading.RLock()
        #: copies derived from this model for one kind of work (the scan and render towers), rebuilt on demand
        self._derived: dict[str, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"ClipModel({self.model_id!r}, {self.kind}, {self.image_size}px, {self.device})"

    def __getstate__(self) -> dict:  # copy.deepcopy and pickle: the lock and derived copies are per instance
        state = dict(self.__dict__)
        state.pop("lock", None)
        state.pop("_derived", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self._derived = {}

    def derived(self, kind: str, key: Any, build: "Callable[[], Any]") -> Any:
        """The copy of this model made for ``kind`` of work with ``key``, built by ``build`` on first
        use and kept (one per kind: another key replaces it). Not copied or pickled with the model."""
        with self.lock:
            held = self._derived.get(kind)
            if held is None or held[0] != key:
                held = self._derived[kind] = (key, build())
            return held[1]

    # -- structure -------------------------------------------------------------------------------
    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def kind(self) -> str:
        """``resnet`` (ModifiedResNet), ``vit`` (VisionTransformer) or ``other``."""
        name = type(self.visual).__name__
        if name == "ModifiedResNet":
            return "resnet"
        if name == "VisionTransformer":
            return "vit"
        return "other"

    def _hookable_names(self) -> list[str]:
        """The layers worth listing, each followed by the SAE branches attached to it
        (:func:`mmneurons.sae.attach_sae`)."""
        modules = dict(self.visual.named_modules())
        names = []
        for name in self._tower_names(modules):
            names.append(name)
            names += [f"{name}.{child}" for child, m in modules[name].named_children()
                      if getattr(m, "is_sae_branch", False)]
        return names

    def _tower_names(self, modules: dict) -> list[str]:
        if self.kind == "resnet":
            names = ["act3"]
            for stage in ("layer1", "layer2", "layer3", "layer4"):
                names.append(stage)
                names += [f"{stage}.{i}" for i in range(len(modules[stage]))]
            names.append("attnpool")
            return [n for n in names if n in modules]
        if self.kind == "vit":  # each block's MLP hidden units (a ViT's neurons), then its residual output
            names = ["conv1"]
            for i in range(len(self.visual.transformer.resblocks)):
                block = f"transformer.resblocks.{i}"
                names += [n for n in (f"{block}.mlp.gelu",) if n in modules] + [block]
            return names
        return [n for n, _ in self.visual.named_children()]

    def module(self, name: str) -> nn.Module:
        """The visual-tower module called ``name`` (``layer4.5``); a clear error for unknown names."""
        key = name[len("visual."):] if name.startswith("visual.") else name
        modules = dict(self.visual.named_modules())
        if key in modules and key:
            return modules[key]
        hookable = self._hookable_names()
        close = difflib.get_close_matches(key, hookable, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise LayerError(f"model {self.model_id} has no layer '{name}'.{hint} "
                         f"Layers: {', '.join(hookable)} (see `mmneurons layers {self.model_id}`)")

    def layers(self) -> list[LayerInfo]:
        """The hookable layers of the visual tower with canonical (C, H, W) output shapes."""
        if self._layers is None:
            from .activations import capture_layers

            names = self._hookable_names()
            x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
            with torch.inference_mode(), self.lock:
                acts = capture_layers(self, x, names, stop=False)
            self._layers = [LayerInfo(n, tuple(acts[n].shape[1:])) for n in names]
        return self._layers

    def default_layer(self) -> str:
        """The last block whose spatial positions reach the output: the layer that "auto" means.

        On a ResNet the last block of the last stage (``layer4.5`` on RN50x4). A class-token ViT reads
        only the class token of its last block, whose patch tokens get zero gradient, so there it is
        the block before.
        """
        blocks = self.block_layers()
        if self.kind == "vit" and len(blocks) > 2:
            return blocks[-2]
        return blocks[-1]

    def block_layers(self) -> list[str]:
        """The tower's blocks with a spatial map, in forward order (no MLP hidden layers, no SAEs)."""
        branches = {n for n, m in self.visual.named_modules() if getattr(m, "is_sae_branch", False)}
        return [info.name for info in self.layers() if (info.shape[1] > 1 or info.shape[2] > 1)
                and ".mlp." not in info.name and info.name not in branches]

    def resolve_layer(self, name: str) -> str:
        """``"auto"`` -> :meth:`default_layer`; any other name is checked to exist."""
        if name == "auto":
            return self.default_layer()
        self.module(name)
        return name

    def layer_info(self, name: str) -> LayerInfo:
        for info in self.layers():
            if info.name == name:
                return info
        self.module(name)  # unknown: raises LayerError with suggestions
        from .activations import capture_layers  # a module that exists but is not listed

        x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        with torch.inference_mode(), self.lock:
            acts = capture_layers(self, x, [name])
        return LayerInfo(name, tuple(acts[name].shape[1:]))

    def layout(self, name: str) -> "GridLayout":
        """How layer ``name``'s raw output is laid out as ``[B, C, H, W]`` (see :class:`GridLayout`)."""
        if self.kind == "vit" and name.startswith("transformer"):
            return GridLayout(tokens=True, batch_first=getattr(self.visual.transformer, "batch_first", True),
                              grid=tuple(self.visual.grid_size))
        return GridLayout()

    def to_grid(self, name: str, output: Any) -> torch.Tensor:
        """Lay a layer's raw output out canonically as ``[B, C, H, W]``."""
        return self.layout(name)(output, name)

    # -- images ----------------------------------------------------------------------------------
    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> the model's normalized input."""
        return (pixels - self._mean_t.to(pixels.dtype)) / self._std_t.to(pixels.dtype)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """A PIL image -> ``[3, S, S]`` pixels in [0, 1]: shorter side resized to S, center crop."""
        from .images import to_pixels

        return to_pixels(image, self.image_size)

    def check_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Validate a pixel batch (shape, size, range) and move it to the model's device."""
        if not isinstance(pixels, torch.Tensor):
            raise TypeError(f"expected a tensor of pixels, got {type(pixels).__name__}")
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(0)
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected images as [B, 3, H, W] RGB pixels, got shape {tuple(pixels.shape)}")
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images must be {self.image_size}x{self.image_size} for {self.model_id}, got "
                             f"{pixels.shape[-2]}x{pixels.shape[-1]}; use model.pixels(pil_image) to resize")
        return pixels.to(self.device)

    # -- encoders --------------------------------------------------------------------------------
    def forward_visual(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings (not normalized) from [0, 1] pixels. Under the model's lock: a hook
        another thread placed for its own pass must not see (or stop) this one."""
        with self.lock:
            return self.model.encode_image(self.normalize(pixels.to(self.device)))

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        feats = self.forward_visual(pixels)
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        with self.lock:
            feats = self.model.encode_text(self.tokenize(texts))
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    @property
    def templates(self) -> tuple[str, ...]:
        """Zero-shot prompt templates that suit this model (its provider may set ``meta['templates']``)."""
        return tuple(self.meta.get("templates") or ("a photo of a {}.",))

    @property
    def featured_units(self) -> tuple[str, ...]:
        """Units worth seeing first, best first (its provider may set ``meta['featured_units']``)."""
        return tuple(str(u) for u in self.meta.get("featured_units") or ())

    @property
    def featured_plugins(self) -> tuple[str, ...]:
        """Plugins whose results the app shows for the featured units without a click."""
        return tuple(str(p) for p in self.meta.get("featured_plugins") or ())

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def zero_shot_classifier(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """``[D, C]`` unit-norm class embeddings: each label's prompts averaged, as in CLIP."""
        labels = [str(label) for label in labels]
        templates = tuple(templates) if templates is not None else self.templates
        if not labels:
            raise ValueError("zero-shot classification needs at least one label; the label list is empty")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("prompt templates must be non-empty and each contain '{}' for the label")
        with torch.no_grad():
            rows = []
            for label in labels:
                emb = self.encode_text([t.format(label) for t in templates])
                rows.append(nn.functional.normalize(emb.mean(0), dim=-1))
        return torch.stack(rows, dim=1)

    def logits(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """CLIP's logits: scaled cosine similarities of image embeddings (as :meth:`forward_visual`
        gives them) with unit-norm text embeddings ``[D]`` or ``[D, C]``."""
        return self.logit_scale * nn.functional.normalize(image_embeddings, dim=-1) @ text_embeddings

    def zero_shot_logits(self, pixels: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` logits of ``pixels`` against a classifier from :meth:`zero_shot_classifier`;
        gradients flow when the caller has them enabled."""
        return self.logits(self.forward_visual(pixels), classifier)

    def render_tower(self, precision: str = "fp32", keep: "Sequence[str] | set[str]" = (), *,
                     channels_last: bool | None = None) -> "ClipModel":
        """A private copy of this model for optimizing inputs (feature visualization): a ResNet
        tower with its BatchNorms folded into the convolutions, in bf16 + channels_last when
        ``precision`` is ``"bf16"``, with packed oneDNN convolutions on CPU; other towers as they
        are. Layers in ``keep`` stay unfolded so hooks there see their own outputs. ``channels_last``:
        NHWC weights also in fp32 (what forward-only work wants; default: with bf16 only). This
        model is not changed."""
        from ._kernels.tower import fast_tower

        return fast_tower(self, precision, keep=keep, channels_last=channels_last)

    def kept_tower(self, kind: str, precision: str, layers: "Sequence[str]" = (), *,
                   channels_last: bool | None = None) -> "ClipModel":
        """:meth:`render_tower` for ``kind`` of work (``"scan_tower"``, ``"render_tower"``), built on
        first use and kept for the next call (a copy of RN50x4's tower takes up to seconds, most of
        them the first touch of new memory; docs/benchmarks.md). Only ``layers`` naming a convolution or
        BatchNorm change the copy (they stay unfolded for their hooks). :func:`mmneurons.sae.attach_sae`
        forgets kept towers; weights edited in place afterwards are not seen by them."""
        unfolded = tuple(sorted(name for name in layers if isinstance(self.module(name), (nn.Conv2d, nn.BatchNorm2d))))
        key = (precision, unfolded, channels_last, str(self.device), id(self.visual))
        return self.derived(kind, key, lambda: self.render_tower(precision, keep=unfolded, channels_last=channels_last))

    def with_visual(self, visual: nn.Module) -> "ClipModel":
        """The same model with another visual tower (e.g. :meth:`render_tower`'s private
        copy). Text tower, tokenizer and metadata are shared; the new instance has its own lock,
        and this one is not changed."""
        inner = copy.copy(self.model)
        inner._modules = dict(self.model._modules)  # a shallow copy would share the module table
        inner.visual = visual
        view = copy.copy(self)  # __getstate__/__setstate__: a fresh lock
        view.model = inner
        return view

    def to(self, device: str | torch.device) -> "ClipModel":
        self.device = torch.device(device)
        self.model.to(self.device)
        self._mean_t = self._mean_t.to(self.device)
        self._std_t = self._std_t.to(self.device)
        return self


def build_clip(model_cfg: dict) -> nn.Module:
    """An open_clip ``CLIP`` (or ``CustomTextCLIP``) at random init from a config dict (``embed_dim``,
    ``vision_cfg``, ``text_cfg``, ...): what model providers load weights into."""
    import open_clip

    cfg = dict(model_cfg)
    if cfg.pop("custom_text", False):
        return open_clip.CustomTextCLIP(**cfg)
    return open_clip.CLIP(**cfg)


def parse_model_id(model_id: str) -> tuple[str, str]:
    """``provider:spec`` -> (provider, spec)."""
    if ":" not in model_id or model_id.startswith(":"):
        raise ModelLoadError(
            f"model id {model_id!r} has no provider: write PROVIDER:NAME, e.g. 'openclip:RN50x4@openai' "
            f"or '{DEFAULT_MODEL_ID}' (see `mmneurons models`)"
        )
    provider, spec = model_id.split(":", 1)
    return provider, spec


def load_model(
    model_id: str | None = None,
    device: str | torch.device | None = None,
    registry: "PluginRegistry | None" = None,
) -> ClipModel:
    """Load a model by id (``openclip:RN50x4@openai``, ``demo:shapes``, ``openclip:/path/ckpt.pt``)."""
    from .registry import get_registry

    registry = registry or get_registry()
    model_id = model_id or default_model_id()
    provider_name, spec = parse_model_id(model_id)
    providers = registry.model_providers()
    for provider in providers:
        if provider.name == provider_name:
            from .sae import attach_saes

            model = provider.load(spec, resolve_device(device))
            attach_saes(model, registry)  # its provider's SAEs, SAE sources', the user's (MMNEURONS_SAE)
            return model
    known = ", ".join(p.name for p in providers) or "none"
    raise ModelLoadError(f"unknown model provider '{provider_name}' in {model_id!r}; providers: {known}")
