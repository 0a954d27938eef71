"""Benchmark: images/s of a micro-batched torch worker vs one forward pass per request.

Both columns use the same worker machinery, the same model and the same images in the same run;
only `batch_size` differs (1 = one call per request, the way a naive tool would run). The model is
a BLIP captioner built from a config with random weights (no download) at a "small" size, with
every caption fixed at the same number of tokens so the work per image is equal. Each cell is the
median of `--repeats` runs after a warm-up run (which also loads the model).

    python bench/workers.py                 # CPU; add --device cuda on a GPU machine
    python bench/workers.py --precisions float32,bfloat16 --device cuda

Prints a markdown table; the ratio column is batched / per-request (target: >= 2x at batch 8 on
a CPU). `run(...)` returns the same numbers as rows for `bench/run.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tiny_vision

TARGET = 2.0  # batched / per-request at batch 8 on a CPU


def _images(count: int, size: int) -> list:  # type: ignore[type-arg]
    from PIL import Image

    return [Image.effect_noise((size, size), 40 + i).convert("RGB") for i in range(count)]


def _throughput(worker, requests, repeats: int) -> float:  # type: ignore[no-untyped-def]
    worker.map(requests)  # warm-up (loads the model on the first call)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        results = worker.map(requests)
        elapsed = time.perf_counter() - started
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        rates.append(len(requests) / elapsed)
    return statistics.median(rates)


def measure(
    device: str = "cpu",
    precisions: Sequence[str] = ("float32",),
    images: int = 32,
    batch_size: int = 8,
    tokens: int = 12,
    hidden: int = 256,
    layers: int = 4,
    repeats: int = 3,
) -> list[tuple[str, float, float, float]]:
    """(placement, per-request img/s, batched img/s, batched / per-request) per precision."""
    from ollagraph.agents.devices import DevicePolicy, resolve_placement
    from ollagraph.agents.workers.caption import CaptionRequest, CaptionRunner
    from ollagraph.agents.workers.pool import Worker, WorkerKey
    from ollagraph.agents.workers.sources import ModelSource
    from tests.tiny_vision import build_tiny_blip

    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_blip(
            Path(folder) / "blip",
            hidden=hidden,
            layers=layers,
            image_size=224,
            patch_size=16,
            fixed_tokens=tokens,
        )
        requests = [CaptionRequest(image, max_new_tokens=tokens) for image in _images(images, 256)]
        rows = []
        for precision in precisions:
            placement = resolve_placement(DevicePolicy(device=device, precision=precision))
            rates = {}
            for size in (1, batch_size):
                runner = CaptionRunner(ModelSource.parse(str(path)), placement)
                key = WorkerKey("caption", str(path), placement.label)
                worker = Worker(key, runner, batch_size=size, idle_timeout=0)
                rates[size] = _throughput(worker, requests, repeats)
                worker.close()
            ratio = rates[batch_size] / rates[1]
            rows.append((placement.label, rates[1], rates[batch_size], ratio))
    return rows


def run(
    device: str = "cpu",
    precisions: Sequence[str] = ("float32",),
    images: int = 32,
    batch_size: int = 8,
    tokens: int = 12,
    hidden: int = 256,
    layers: int = 4,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Rows for `bench/run.py`: the batched worker (ollagraph) vs one call per request (peer).

    The target (>= 2x) is for batch 8 on a CPU; smaller batches are reported only.
    """
    from bench import row

    measured = measure(device, precisions, images, batch_size, tokens, hidden, layers, repeats)
    return [
        row(
            "workers",
            f"captions/s, batch {batch_size} vs one per request ({label}; BLIP hidden {hidden}, "
            f"{layers} layers, random weights, {images} images, {tokens} tokens, median of "
            f"{repeats})",
            batched,
            single,
            "img/s",
            better="higher",
            target=TARGET if batch_size >= 8 else None,
        )
        for label, single, batched, _ratio in measured
    ]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="float32")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = measure(
        args.device,
        args.precisions.split(","),
        args.images,
        args.batch_size,
        args.tokens,
        args.hidden,
        args.layers,
        args.repeats,
    )

    print(
        f"\nCaptioning, BLIP (hidden {args.hidden}, {args.layers} layers, 224 px, random "
        f"weights), {args.images} images, {args.tokens} tokens each, median of {args.repeats}\n"
    )
    print(f"| device | per request (img/s) | batch {args.batch_size} (img/s) | ratio |")
    print("|---|---:|---:|---:|")
    for label, single, batched, ratio in rows:
        print(f"| {label} | {single:.2f} | {batched:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
