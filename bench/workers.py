"""Benchmark: images/s of a micro-batched torch worker vs one forward pass per request.

Both columns use the same worker machinery, the same model and the same images in the same run;
only `batch_size` differs (1 = one call per request, the way a naive tool would run). The model is
a BLIP captioner built from a config with random weights (no download) at a "small" size, with
every caption fixed at the same number of tokens so the work per image is equal. Each cell is the
median of `--repeats` runs after a warm-up run (which also loads the model).

    python bench/workers.py                 # CPU; add --device cuda on a GPU machine
    python bench/workers.py --precisions float32,bfloat16 --device cuda

Prints a markdown table; the ratio column is batched / per-request (target: >= 2x at batch 8 on
a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tiny_vision


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

    from ollagraph.agents.devices import DevicePolicy, resolve_placement
    from ollagraph.agents.workers.caption import CaptionRequest, CaptionRunner
    from ollagraph.agents.workers.pool import Worker, WorkerKey
    from ollagraph.agents.workers.sources import ModelSource
    from tests.tiny_vision import build_tiny_blip

    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_blip(
            Path(folder) / "blip",
            hidden=args.hidden,
            layers=args.layers,
            image_size=224,
            patch_size=16,
            fixed_tokens=args.tokens,
        )
        requests = [
            CaptionRequest(image, max_new_tokens=args.tokens) for image in _images(args.images, 256)
        ]
        rows = []
        for precision in args.precisions.split(","):
            placement = resolve_placement(DevicePolicy(device=args.device, precision=precision))
            rates = {}
            for batch_size in (1, args.batch_size):
                runner = CaptionRunner(ModelSource.parse(str(path)), placement)
                key = WorkerKey("caption", str(path), placement.label)
                worker = Worker(key, runner, batch_size=batch_size, idle_timeout=0)
                rates[batch_size] = _throughput(worker, requests, args.repeats)
                worker.close()
            ratio = rates[args.batch_size] / rates[1]
            rows.append((placement.label, rates[1], rates[args.batch_size], ratio))

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
