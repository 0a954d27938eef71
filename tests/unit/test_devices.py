"""The shared device policy as a resolution table over simulated machines (no GPU here), plus
the real CPU path and the per-task overrides from settings."""

from __future__ import annotations

import pytest

from ollagraph.agents.config import Settings, load_settings
from ollagraph.agents.devices import DeviceCaps, DevicePolicy, Gpu, resolve_placement
from ollagraph.agents.errors import ConfigError, DeviceError
from ollagraph.agents.workers.service import task_placement, task_policy

CPU = DeviceCaps()
MAC = DeviceCaps(mps=True)
A100 = DeviceCaps(cuda=(Gpu("A100", bf16=True),), accelerate=True, bitsandbytes=True)
T4 = DeviceCaps(cuda=(Gpu("T4", bf16=False),), accelerate=True)
TWO = DeviceCaps(cuda=(Gpu("A", bf16=True), Gpu("B", bf16=True)), accelerate=True)
BARE_GPU = DeviceCaps(cuda=(Gpu("L4", bf16=True),))  # no accelerate, no bitsandbytes


@pytest.mark.parametrize(
    ("caps", "policy", "device", "dtype", "device_map", "note"),
    [
        (CPU, DevicePolicy(), "cpu", "float32", None, ""),
        (MAC, DevicePolicy(), "mps", "float16", None, ""),
        (A100, DevicePolicy(), "cuda", "bfloat16", None, ""),
        (T4, DevicePolicy(), "cuda", "float16", None, ""),
        (A100, DevicePolicy(device="cpu"), "cpu", "float32", None, ""),
        (CPU, DevicePolicy(precision="fp16"), "cpu", "float32", None, "fp16 requested on the CPU"),
        (CPU, DevicePolicy(precision="bfloat16"), "cpu", "float32", None, "bf16 requested on"),
        (T4, DevicePolicy(precision="bf16"), "cuda", "float16", None, "does not support"),
        (MAC, DevicePolicy(precision="bf16"), "mps", "float16", None, "bf16 requested on MPS"),
        (A100, DevicePolicy(precision="float32"), "cuda", "float32", None, ""),
        (TWO, DevicePolicy(device="cuda:1"), "cuda:1", "bfloat16", None, ""),
        (TWO, DevicePolicy(device_mode="auto"), "cuda", "bfloat16", "auto", ""),
        (CPU, DevicePolicy(device_mode="auto"), "cpu", "float32", None, "spreads models over"),
        (A100, DevicePolicy(quantization="nf4"), "cuda", "bfloat16", None, ""),
        (A100, DevicePolicy(quantization="int8"), "cuda", "bfloat16", None, ""),
    ],
)
def test_resolution_table(
    caps: DeviceCaps,
    policy: DevicePolicy,
    device: str,
    dtype: str,
    device_map: str | None,
    note: str,
) -> None:
    placement = resolve_placement(policy, caps)
    assert (placement.device, placement.dtype, placement.device_map) == (device, dtype, device_map)
    if note:
        assert any(note in n for n in placement.notes), placement.notes
    else:
        assert placement.notes == ()


@pytest.mark.parametrize(
    ("caps", "policy", "message"),
    [
        (CPU, DevicePolicy(device="cuda"), "torch sees no CUDA GPU"),
        (CPU, DevicePolicy(device="mps"), "'mps' is not available"),
        (TWO, DevicePolicy(device="cuda:2"), r"2 CUDA device\(s\)"),
        (CPU, DevicePolicy(quantization="int4"), "needs a CUDA GPU"),
        (MAC, DevicePolicy(quantization="nf4"), "needs a CUDA GPU"),
        (BARE_GPU, DevicePolicy(quantization="int8"), "needs the bitsandbytes package"),
        (BARE_GPU, DevicePolicy(device_mode="auto"), "needs the accelerate package"),
    ],
)
def test_impossible_requests_are_clear_errors(
    caps: DeviceCaps, policy: DevicePolicy, message: str
) -> None:
    with pytest.raises(DeviceError, match=message):
        resolve_placement(policy, caps)


@pytest.mark.parametrize(
    ("field", "value"),
    [("device", "tpu"), ("precision", "int3"), ("device_mode", "many"), ("quantization", "q2")],
)
def test_unknown_values_are_refused(field: str, value: str) -> None:
    with pytest.raises(DeviceError, match=f"Unknown {field}"):
        DevicePolicy(**{field: value})


def test_labels_and_spelling() -> None:
    policy = DevicePolicy(device="CUDA", precision="half", quantization="NF4", device_mode="auto")
    assert (policy.device, policy.precision, policy.quantization) == ("cuda", "float16", "nf4")
    caps = DeviceCaps(cuda=TWO.cuda, accelerate=True, bitsandbytes=True)
    assert resolve_placement(policy, caps).label == "cuda fp16 nf4 spread"
    assert resolve_placement(DevicePolicy(precision="bf16"), A100).label == "cuda bf16"


def test_quantization_config_is_bitsandbytes_shaped() -> None:
    pytest.importorskip("transformers")
    placement = resolve_placement(DevicePolicy(quantization="nf4"), A100)
    config = placement.quantization_config()
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert (
        resolve_placement(DevicePolicy(quantization="int8"), A100)
        .quantization_config()
        .load_in_8bit
    )
    assert resolve_placement(DevicePolicy(), A100).quantization_config() is None


@pytest.mark.torch
def test_the_real_machine() -> None:
    import torch

    caps = DeviceCaps.probe()
    placement = resolve_placement(DevicePolicy(), caps)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if caps.mps else "cpu")
    assert placement.device == expected
    tensor = torch.ones(3, device=placement.device, dtype=placement.torch_dtype())
    assert tensor.sum().item() == 3.0


def test_task_overrides_replace_global_settings() -> None:
    settings = Settings(
        device="cpu",
        precision="auto",
        batch_size=8,
        task_overrides={"caption": {"precision": "float16", "batch_size": 2, "model": "m/x"}},
    )
    model, policy = task_policy(settings, "caption")
    assert (model, policy.precision, policy.batch_size) == ("m/x", "float16", 2)
    model, policy = task_policy(settings, "upscale")
    assert (model, policy.precision, policy.batch_size) == (settings.upscale_model, "auto", 8)
    source, placement = task_placement(settings, "caption", CPU)
    assert source.name == "m/x" and placement.dtype == "float32" and placement.notes


def test_task_overrides_from_toml_and_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text('[task_overrides.faces]\ndevice = "cpu"\nbatch_size = 4\n')
    settings = load_settings(path, env={"OLLAGRAPH_TASK_OVERRIDES": "caption.precision=fp16"})
    assert settings.task_overrides == {"caption": {"precision": "fp16"}}  # env replaces the file
    settings = load_settings(path, env={})
    assert settings.task_overrides == {"faces": {"device": "cpu", "batch_size": 4}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"paint": {"device": "cpu"}}, "Unknown task 'paint'"),
        ({"caption": {"colour": "red"}}, "Unknown key"),
    ],
)
def test_bad_task_overrides(overrides: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=message):
        Settings(task_overrides=overrides)


def test_bad_override_value_is_a_config_error() -> None:
    settings = Settings(task_overrides={"upscale": {"batch_size": "many"}})
    with pytest.raises(ConfigError, match="batch_size"):
        task_policy(settings, "upscale")
    with pytest.raises(DeviceError, match="Unknown precision"):
        task_policy(Settings(task_overrides={"upscale": {"precision": "fp8"}}), "upscale")


@pytest.mark.torch
def test_pretrained_options_follow_the_placement() -> None:
    import torch

    plain = resolve_placement(DevicePolicy(low_cpu_mem_usage=False), CPU)
    assert plain.pretrained_options() == {"dtype": torch.float32, "low_cpu_mem_usage": False}
    assert not plain.placed_by_loader
    spread = resolve_placement(DevicePolicy(device_mode="auto"), TWO)
    assert spread.pretrained_options()["device_map"] == "auto" and spread.placed_by_loader
    quantized = resolve_placement(DevicePolicy(quantization="int4"), A100)
    options = quantized.pretrained_options()
    assert options["dtype"] == torch.bfloat16 and options["quantization_config"].load_in_4bit
    assert quantized.placed_by_loader
