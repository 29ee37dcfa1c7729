"""Sparse autoencoders on a layer's activations: a TopK SAE (Gao et al. 2024) and its file.

An SAE reads one position of a layer (a ResNet map's pixel, a ViT patch token) as a vector of the
layer's channels, normalizes it with the mean and scale stored with it, and writes it as a sparse
code over ``features`` directions: the ``k`` largest ReLU pre-activations are kept, the rest set
to 0. The decoder's rows are the features' directions, kept at unit norm.

The file is safetensors (tensors only, no code) with the layer, the model id and weights hash, the
training data's description and the measured quality in its metadata; :meth:`SAE.check` refuses
a model other than the one it was trained on.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

__all__ = ["SAE", "SAEBranch", "SAEError", "SAEInfo", "SAE_FORMAT", "attach_sae", "attach_saes", "shipped_sae",
           "shipped_sae_layers"]

#: environment variable: SAE files (separated by the path separator) attached to the models they were trained on
SAE_ENV = "MMNEURONS_SAE"

SAE_FORMAT = "mmneurons-sae/1"


class SAEError(ValueError):
    """An SAE file that cannot be used as asked: the message says why and what to do."""


@dataclass
class SAEInfo:
    """What an SAE is of and how it was made and measured (the file's metadata)."""

    layer: str
    model_id: str
    model_sha256: str | None
    features: int
    k: int
    channels: int
    data: str = ""
    training: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)


class SAE(torch.nn.Module):
    """A TopK sparse autoencoder over ``channels``-dimensional positions."""

    def __init__(self, info: SAEInfo, *, seed: int = 0) -> None:
        super().__init__()
        if info.k < 1 or info.k > info.features:
            raise SAEError(f"k={info.k} must be between 1 and the {info.features} features")
        self.info = info
        g = torch.Generator().manual_seed(seed)
        directions = torch.randn(info.features, info.channels, generator=g)
        directions /= directions.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(directions)                      # [F, C] unit rows
        self.W_enc = torch.nn.Parameter(directions.T.clone())            # [C, F] the decoder's transpose
        self.b_enc = torch.nn.Parameter(torch.zeros(info.features))
        self.b_dec = torch.nn.Parameter(torch.zeros(info.channels))
        self.register_buffer("mean", torch.zeros(info.channels))
        self.register_buffer("scale", torch.ones(()))

    @property
    def k(self) -> int:
        return self.info.k

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.scale.to(x.dtype)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F]`` each feature's encoder value before the ReLU and the top-k: what a feature
        visualization of it raises."""
        return (self.normalized(x) - self.b_dec.to(x.dtype)) @ self.W_enc.to(x.dtype) + self.b_enc.to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F]`` codes: the ``k`` largest ReLU pre-activations of each position, others 0."""
        pre = torch.relu(self.pre_activations(x))
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

    def decode_normalized(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec.to(codes.dtype) + self.b_dec.to(codes.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` positions in the layer's own units."""
        return self.decode_normalized(codes) * self.scale.to(codes.dtype) + self.mean.to(codes.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    # -- the model it belongs to -----------------------------------------------------------------
    def check(self, model: "ClipModel") -> None:
        """Refuse a model other than the one this SAE was trained on (its id, and its weights hash
        where both are known), or a layer whose width differs."""
        from .provenance import other_model

        info = self.info
        other = other_model(model, info.model_id, info.model_sha256)
        if other:
            raise SAEError(f"this SAE of {info.layer} was trained on {other}; train one for this model with "
                           f"`mmneurons sae train`")
        channels = model.layer_info(info.layer).channels
        if channels != info.channels:
            raise SAEError(f"this SAE reads {info.channels} channels; layer '{info.layer}' of {model.model_id} "
                           f"has {channels}")

    # -- the file --------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().float().contiguous().cpu() for name, value in self.state_dict().items()}

    def save(self, path: "str | os.PathLike") -> Path:
        """Write the SAE atomically. An existing file is replaced only when it is an SAE file."""
        from safetensors.torch import save

        from .own_files import write_own_file

        data = save(self.tensors(), metadata={"format": SAE_FORMAT, "info": json.dumps(asdict(self.info))})
        return write_own_file(path, data, kind="an SAE file", example="layer.sae.safetensors", is_ours=SAE.load,
                              error=SAEError)

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "SAE":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise SAEError(f"SAE file {path} does not exist; train one with `mmneurons sae train`")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise SAEError(f"{path} is not an SAE file: {exc}") from None
        if meta.get("format") != SAE_FORMAT:
            raise SAEError(f"{path} is not an SAE file (format {SAE_FORMAT})")
        try:
            info = SAEInfo(**json.loads(meta["info"]))
            sae = cls(info)
            sae.load_state_dict(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise SAEError(f"SAE file {path} is damaged: {exc}") from None
        return sae.eval()

    def describe(self) -> dict[str, Any]:
        return asdict(self.info)


def shipped_sae_layers(model: "ClipModel") -> list[str]:
    """The layers for which ``model``'s provider ships an SAE (``meta['saes']``)."""
    return sorted((model.meta.get("saes") or {}).keys())


def shipped_sae(model: "ClipModel", layer: str) -> SAE:
    """The SAE ``model``'s provider ships for ``layer``, its file checked against the sha256 the
    provider gives, and the model against the SAE."""
    import hashlib

    entry = (model.meta.get("saes") or {}).get(layer)
    if entry is None:
        have = ", ".join(shipped_sae_layers(model)) or "none"
        raise SAEError(f"{model.model_id} ships no SAE of '{layer}' (it ships: {have}); train one with "
                       f"`mmneurons sae train`")
    path = Path(entry["path"])
    if entry.get("sha256"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if digest != entry["sha256"]:
            state = "is missing" if digest is None else "failed its checksum"
            raise SAEError(f"the SAE file {path} of {model.model_id} {state} (the provider says sha256 "
                           f"{entry['sha256'][:12]}...): reinstall it")
    sae = SAE.load(path)
    sae.check(model)
    return sae


class SAEBranch(torch.nn.Module):
    """An SAE's features as a layer of the visual tower: ``<layer>.sae``, a child of the layer it
    reads, run by a hook on that layer whenever something listens to it (a capture, an edit). Its
    output has the layer's own layout with the features as channels, so every unit of it
    (``layer4.0.sae:17``) is read, ranked, visualized and ablated like a neuron.

    Values are the TopK codes; with gradients on, each feature's gradient is its encoder
    pre-activation's (a straight-through code), so a feature visualization can raise a feature that
    is not yet among the top k. An edit of the codes reaches the rest of the network as the change
    of the decoder's contribution: removing a feature subtracts what it adds to the layer."""

    is_sae_branch = True

    def __init__(self, sae: SAE) -> None:
        super().__init__()
        self.sae = sae
        for p in self.sae.parameters():
            p.requires_grad_(False)
        self.last: torch.Tensor | None = None

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        dim = 1 if output.ndim in (2, 4) else output.ndim - 1
        rows = output.movedim(dim, -1)
        pre = self.sae.pre_activations(rows)
        top = torch.relu(pre).topk(self.sae.k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        if torch.is_grad_enabled():
            codes = codes + (pre - pre.detach())
        self.last = codes.movedim(-1, dim)
        return self.last

    def change(self, output: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``output`` plus the decoder's contribution of ``codes`` minus that of the codes this
        branch computed (zero unless an edit or a gradient leaf replaced them)."""
        dim = 1 if output.ndim in (2, 4) else output.ndim - 1
        delta = (codes - self.last.detach()).movedim(dim, -1)
        added = (delta @ self.sae.W_dec.to(delta.dtype)) * self.sae.scale.to(delta.dtype)
        return output + added.movedim(-1, dim).to(output.dtype)


def _branch_hook(module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
    """On a layer with SAE branches: run each one that something listens to, and apply its edits."""
    first = output[0] if isinstance(output, (tuple, list)) else output
    changed = first
    for child in module.children():
        if getattr(child, "is_sae_branch", False) and (child._forward_hooks or child._forward_pre_hooks):
            codes = child(first)
            if codes is not child.last:
                changed = child.change(changed, codes)
            child.last = None
    if changed is first:
        return None
    return (changed, *output[1:]) if isinstance(output, tuple) else changed


def attach_sae(model: "ClipModel", sae: SAE, name: str = "sae") -> str:
    """Make ``sae``'s features the layer ``<its layer>.<name>`` of ``model`` (checked against the
    model first); returns the layer's name. Attaching again under the same name replaces it."""
    sae.check(model)
    parent = model.module(sae.info.layer)
    existing = parent._modules.get(name)
    if existing is not None and not getattr(existing, "is_sae_branch", False):
        raise SAEError(f"layer '{sae.info.layer}' already has a part called '{name}'; attach under another name")
    with model.lock:
        parent.add_module(name, SAEBranch(sae.to(model.device)))
        if not any(hook is _branch_hook for hook in parent._forward_hooks.values()):
            parent.register_forward_hook(_branch_hook)
        model._layers = None     # the layer list and the derived towers now include the branch
        model._derived.clear()
    return f"{sae.info.layer}.{name}"


def attach_saes(model: "ClipModel", registry: Any = None) -> list[str]:
    """Attach the SAEs ``model``'s provider ships (``meta['saes']``), those the installed SAE sources
    have for it (the ``mmneurons_saes`` hook) and those named in ``MMNEURONS_SAE`` that were trained
    on it; the names of the layers they make. A source's file of another model is left out; one
    that cannot be read is a warning, and the model loads without it."""
    import warnings

    names = [attach_sae(model, shipped_sae(model, layer)) for layer in shipped_sae_layers(model)]
    files: list[tuple[str, Any]] = []
    if registry is not None:
        for source in registry.sae_sources():
            try:
                files += [(source.name, path) for path in source.files(model)]
            except Exception as exc:  # noqa: BLE001 - a third party's failure must not stop the model loading
                warnings.warn(f"SAE source '{source.name}' failed for {model.model_id}: {type(exc).__name__}: {exc}",
                              stacklevel=2)
    asked = [item for item in os.environ.get(SAE_ENV, "").split(os.pathsep) if item]
    files += [(Path(item).name.split(".")[0], item) for item in asked]
    for origin, item in files:
        try:
            sae = SAE.load(item)
        except SAEError as exc:
            if item in asked:
                raise SAEError(f"{SAE_ENV}: {exc}") from None  # the user's own list: a clear error
            warnings.warn(f"{exc} (from SAE source '{origin}')", stacklevel=2)
            continue
        if sae.info.model_id != model.model_id:
            continue  # a source or the variable may name SAEs of several models
        taken = model.module(sae.info.layer)._modules.get("sae") is not None
        names.append(attach_sae(model, sae, re.sub(r"\W", "_", origin) if taken else "sae"))
    return names
