"""Units and directions: what a visualization, attribution or probe is about.

A unit is one channel of a layer of the visual tower, spatially averaged or read at one position:
``layer4.5:17`` (channel 17 of ``visual.layer4[5]``) or ``layer4.5:17@4,4`` (at row 4, column 4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .errors import UnitError  # noqa: F401 - raised here, defined light

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

_UNIT_RE = re.compile(r"^(?P<layer>[A-Za-z_][\w.]*):(?P<channel>-?\d+)(?:@(?P<y>-?\d+),(?P<x>-?\d+))?$")


@dataclass(frozen=True)
class Unit:
    """One channel of a layer; ``position`` = (row, column) or None for the spatial mean."""

    layer: str
    channel: int
    position: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: "str | Unit") -> "Unit":
        """Parse ``layer:channel`` or ``layer:channel@row,col``."""
        if isinstance(text, Unit):
            return text
        match = _UNIT_RE.match(text.strip())
        if not match:
            raise UnitError(
                f"cannot parse unit {text!r}: write LAYER:CHANNEL or LAYER:CHANNEL@ROW,COL, e.g. 'layer4.5:17'"
            )
        pos = None
        if match["y"] is not None:
            pos = (int(match["y"]), int(match["x"]))
        return cls(match["layer"], int(match["channel"]), pos)

    def __str__(self) -> str:
        pos = f"@{self.position[0]},{self.position[1]}" if self.position is not None else ""
        return f"{self.layer}:{self.channel}{pos}"

    def validate(self, model: "ClipModel") -> "Unit":
        """Check the layer, channel and position exist in ``model``; return self."""
        info = model.layer_info(self.layer)  # raises a clear error for unknown layers
        channels = info.shape[0]
        if not 0 <= self.channel < channels:
            raise UnitError(f"unit {self}: channel {self.channel} is out of range; layer '{self.layer}' "
                            f"has {channels} channels (0..{channels - 1})")
        if self.position is not None:
            h, w = info.shape[1:]
            y, x = self.position
            if not (0 <= y < h and 0 <= x < w):
                raise UnitError(f"unit {self}: position ({y},{x}) is outside the {h}x{w} grid of '{self.layer}'")
        return self

    def read(self, acts: torch.Tensor) -> torch.Tensor:
        """This unit's value per image from canonical activations ``[B, C, H, W]``."""
        channel = acts[:, self.channel]
        if self.position is None:
            return channel.mean(dim=(-2, -1))
        return channel[:, self.position[0], self.position[1]]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "channel": self.channel,
                "position": list(self.position) if self.position is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Unit":
        return cls(d["layer"], int(d["channel"]), tuple(d["position"]) if d.get("position") else None)


@dataclass(frozen=True, eq=False)
class Direction:
    """A direction in a layer's channel space (e.g. a sparse combination of units, or a text direction)."""

    layer: str
    vector: np.ndarray = field(repr=False)
    label: str = ""

    def __post_init__(self) -> None:
        vec = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if vec.size == 0 or not np.isfinite(vec).all():
            raise UnitError(f"direction on '{self.layer}' must be a non-empty finite vector")
        object.__setattr__(self, "vector", vec)

    def __str__(self) -> str:
        return self.label or f"{self.layer}:direction[{self.vector.size}]"

    def validate(self, model: "ClipModel") -> "Direction":
        channels = model.layer_info(self.layer).shape[0]
        if self.vector.size != channels:
            raise UnitError(f"direction on '{self.layer}' has {self.vector.size} components; "
                            f"the layer has {channels} channels")
        return self

    def read(self, acts: torch.Tensor) -> torch.Tensor:
        """Projection of the spatially averaged activations on this direction, per image."""
        vec = torch.as_tensor(self.vector, dtype=acts.dtype, device=acts.device)
        return acts.mean(dim=(-2, -1)) @ vec

    def to_dict(self) -> dict:
        return {"layer": self.layer, "vector": self.vector.tolist(), "label": self.label}


def parse_unit_or_layer(text: "str | Unit") -> "Unit | str":
    """``layer4.0:17`` -> a :class:`Unit`; ``layer4.0`` -> the layer name (neither is validated)."""
    if isinstance(text, Unit):
        return text
    text = str(text).strip()
    return Unit.parse(text) if ":" in text else text


def unit_and_layer(target: "Unit | str") -> "tuple[Unit | None, str]":
    """(the unit or None, its layer) of a parsed unit-or-layer target (what a probe's ``compute``
    receives for targets ``("unit", "layer")``)."""
    return (target, target.layer) if isinstance(target, Unit) else (None, str(target))


def parse_units(texts: Sequence["str | Unit"]) -> list[Unit]:
    """Parse several units; the error names the one that failed."""
    return [Unit.parse(t) for t in texts]
