"""Hardware-dependent defaults follow the hardware: bf16 only where the CPU computes it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmneurons import hardware
from mmneurons.hardware import auto_precision, cpu_has_bf16


def _cpu(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


@pytest.mark.parametrize("amx, avx512_bf16", [(True, True), (False, True), (True, False)])
def test_a_cpu_with_bf16_instructions_gets_bf16_from_160_px(monkeypatch, amx, avx512_bf16):
    _cpu(monkeypatch, amx, avx512_bf16)
    assert cpu_has_bf16()
    assert auto_precision("cpu", 288) == "bf16" and auto_precision("cpu", 160) == "bf16"
    assert auto_precision("cpu", 64) == "fp32"


def test_a_cpu_without_bf16_instructions_gets_fp32_at_every_size(monkeypatch):
    _cpu(monkeypatch, False, False)
    assert not cpu_has_bf16()
    assert [auto_precision("cpu", size) for size in (64, 160, 288, 448)] == ["fp32"] * 4


def test_gpus_get_bf16_and_other_devices_fp32(monkeypatch):
    _cpu(monkeypatch, False, False)
    assert auto_precision("cuda", 64) == "bf16" and auto_precision(torch.device("cuda:1"), 288) == "bf16"
    assert auto_precision("meta", 288) == "fp32"


def test_a_probe_that_fails_or_is_missing_claims_nothing(monkeypatch):
    def broken():
        raise RuntimeError("cpuinfo could not read this CPU")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert not cpu_has_bf16()
    assert auto_precision("cpu", 288) == "fp32"


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU flags Linux reports")
def test_the_probe_agrees_with_the_flags_linux_reports():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    assert hardware.cpu_has_bf16() == ("amx_tile" in flags or "avx512_bf16" in flags), flags
