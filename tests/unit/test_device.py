"""The device/precision policy, on simulated machines (CUDA with and without bf16, MPS, CPU)
and on the real CPU of the test machine."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ollagraph.agents.engine.device import describe, resolve_device, resolve_dtype

pytestmark = pytest.mark.torch


@dataclass(frozen=True)
class Machine:
    cuda: int = 0
    bf16: bool = False
    mps: bool = False


def simulate(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: machine.cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: machine.cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: machine.bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: machine.mps)


@pytest.mark.parametrize(
    ("machine", "device"),
    [
        (Machine(cuda=1, mps=True), "cuda"),
        (Machine(mps=True), "mps"),
        (Machine(), "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, machine: Machine, device: str
) -> None:
    simulate(monkeypatch, machine)
    assert resolve_device() == device
    assert resolve_device("auto") == device


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, Machine(cuda=2, mps=False))
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("CUDA") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="'mps' is not available"):
        resolve_device("mps")


def test_unavailable_and_unknown_devices_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, Machine())
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"unknown device 'tpu'.*OLLAGRAPH_DEVICE"):
        resolve_device("tpu")


def test_device_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, Machine(cuda=1))
    assert resolve_device() == "cuda"
    monkeypatch.setenv("OLLAGRAPH_DEVICE", "cpu")
    assert resolve_device() == "cpu"
    assert resolve_device("cuda") == "cuda"  # an explicit request wins over the environment
    monkeypatch.setenv("OLLAGRAPH_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device()


@pytest.mark.parametrize(
    ("machine", "device", "dtype"),
    [
        (Machine(cuda=1, bf16=True), "cuda", "bfloat16"),
        (Machine(cuda=1, bf16=False), "cuda", "float16"),
        (Machine(mps=True), "mps", "float16"),
        (Machine(), "cpu", "float32"),
    ],
)
def test_auto_precision_per_device(
    monkeypatch: pytest.MonkeyPatch, machine: Machine, device: str, dtype: str
) -> None:
    simulate(monkeypatch, machine)
    assert resolve_dtype(device) == (getattr(torch, dtype), "")


@pytest.mark.parametrize(("requested", "short"), [("fp16", "fp16"), ("bf16", "bf16")])
def test_half_precision_on_cpu_is_downgraded_with_a_note(requested: str, short: str) -> None:
    dtype, note = resolve_dtype("cpu", requested)
    assert dtype == torch.float32
    assert note.startswith(f"{short} requested on the CPU: using fp32")


def test_explicit_precision_on_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, Machine(cuda=1, bf16=False))
    assert resolve_dtype("cuda:0", "fp32") == (torch.float32, "")
    assert resolve_dtype("cuda", "fp16") == (torch.float16, "")
    dtype, note = resolve_dtype("cuda", "bf16")
    assert dtype == torch.float16 and "does not support" in note


def test_precision_from_the_environment_and_unknown_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAGRAPH_PRECISION", "bf16")
    dtype, note = resolve_dtype("cpu")
    assert dtype == torch.float32 and "bf16" in note
    with pytest.raises(ValueError, match="unknown precision 'int3'"):
        resolve_dtype("cpu", "int3")


def test_the_real_cpu_path() -> None:
    device = resolve_device("cpu")
    dtype, note = resolve_dtype(device)
    assert (device, dtype, note) == ("cpu", torch.float32, "")
    assert describe(device, dtype) == "cpu fp32"
    assert torch.ones(2, device=device, dtype=dtype).sum().item() == 2.0


def test_importing_the_policy_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys; import ollagraph.agents.engine.device; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
