"""A model packed for another process: its structure pickled without tensor data, the data as
numpy arrays.

Pickling a torch module writes every tensor through ``torch.save`` into bytes, slowly (an
RN50x4 took seconds to put into Ray's object store and most of a Ray actor's start-up to take
out, docs/benchmarks.md); numpy arrays travel as raw buffers, which Ray's object store hands to
every process on a node without a copy. :func:`pack_model` splits a :class:`ClipModel` into a
skeleton (its modules with every parameter and buffer on the ``meta`` device: no data) and the
arrays; :meth:`PackedModel.unpack` puts the data back, ties and ``requires_grad`` included.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

__all__ = ["PackedModel", "pack_model"]

#: tensors numpy cannot hold travel as the integers of their width
_CARRIERS = {torch.bfloat16: torch.int16}


@dataclass
class PackedModel:
    """A CPU :class:`ClipModel` as ``skeleton`` (no tensor data) and ``arrays`` (one per distinct
    tensor); ``slots`` names where each array goes: ``(module path, attribute, array index,
    is parameter, requires_grad, dtype name)``."""

    skeleton: "ClipModel"
    arrays: list[np.ndarray]
    slots: list[tuple[str, str, int, bool, bool, str]]

    def unpack(self) -> "ClipModel":
        """The model, with its own (writable) copy of every array; tied tensors stay tied."""
        model = self.skeleton
        made: dict[int, torch.Tensor] = {}
        for module_path, attribute, index, is_parameter, requires_grad, dtype in self.slots:
            if index not in made:
                data = _tensor_copy(self.arrays[index])
                wanted = getattr(torch, dtype)
                data = data if data.dtype == wanted else data.view(wanted)
                made[index] = torch.nn.Parameter(data, requires_grad=requires_grad) if is_parameter else data
            owner = model.model.get_submodule(module_path)
            (owner._parameters if is_parameter else owner._buffers)[attribute] = made[index]
        return model


def pack_model(model: "ClipModel") -> PackedModel:
    """``model`` (on the CPU) split into a skeleton and arrays (see the module's docstring)."""
    if model.device.type != "cpu":
        raise ValueError(f"pack_model needs a model on the CPU, not {model.device}")
    named = list(chain(model.model.named_parameters(remove_duplicate=False),
                       model.model.named_buffers(remove_duplicate=False)))
    index_of: dict[int, int] = {}
    arrays: list[np.ndarray] = []
    slots = []
    memo: dict[int, torch.Tensor] = {}
    for name, tensor in named:
        key = id(tensor)
        if key not in index_of:
            index_of[key] = len(arrays)
            data = tensor.detach()
            carrier = _CARRIERS.get(data.dtype)
            arrays.append((data.view(carrier) if carrier else data).contiguous().numpy())
            empty = torch.empty_like(data, device="meta")
            memo[key] = torch.nn.Parameter(empty, requires_grad=tensor.requires_grad) \
                if isinstance(tensor, torch.nn.Parameter) else empty
        module_path, _, attribute = name.rpartition(".")
        slots.append((module_path, attribute, index_of[key], isinstance(tensor, torch.nn.Parameter),
                      bool(tensor.requires_grad), str(tensor.dtype).removeprefix("torch.")))
    skeleton = copy.deepcopy(model, memo)
    return PackedModel(skeleton, arrays, slots)


def _tensor_copy(array: np.ndarray) -> torch.Tensor:
    """A writable tensor copy of ``array`` (which may be a read-only view of Ray's object store:
    the read-only tensor torch warns about exists only to be copied). torch copies large arrays
    several times faster than numpy here (docs/benchmarks.md)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).clone()
