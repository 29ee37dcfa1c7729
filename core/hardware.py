"""Defaults that depend on the hardware, chosen from the hardware the code runs on.

Machines of one kind can carry different CPUs (Intel Xeon with AMX, AMD EPYC with AVX-512-BF16,
AMD EPYC with AVX2 only), and a default that is fast on one can be slow on another: bfloat16 on a
CPU without bf16 instructions is emulated, and slower than float32 (docs/benchmarks.md).
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "cpu_has_bf16", "auto_precision", "resolve_precision"]

#: what ``precision`` parameters accept (fp16 only on GPUs: CPUs have no fast fp16 convolutions)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: ``torch.cpu`` probes for bfloat16 arithmetic in hardware (private, so each is looked up with care)
_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX-512-BF16)."""
    for name in _BF16_PROBES:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # a build whose cpuinfo cannot read this CPU: no claim either way
            continue
    return False


def auto_precision(device: torch.device | str, image_size: int) -> str:
    """``"bf16"`` or ``"fp32"`` for work on ``device`` at ``image_size`` px.

    GPU: bf16. CPU: bf16 for inputs of 160 px and up when the CPU has bf16 instructions (below
    that, the casts cost more than they save), else fp32. Other devices: fp32.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16"
    if kind == "cpu" and image_size >= 160 and cpu_has_bf16():
        return "bf16"
    return "fp32"


def resolve_precision(device: torch.device | str, image_size: int, precision: str) -> str:
    """``precision`` with ``"auto"`` replaced by :func:`auto_precision`; a one-line error for a
    name it does not know, or fp16 on a CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return auto_precision(device, image_size)
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a GPU; on a CPU use bf16 (where it has bf16 instructions) or fp32")
    return precision
