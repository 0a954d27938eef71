"""`agent image caption|generate|upscale|faces`: the image workers, straight from the shell.

Many inputs are checked first (a bad file is reported and skipped, the rest go on), then queued
together so the worker batches them, with a progress bar on stderr. Results go to stdout, one
line per input (or JSON with `--json`). A model that cannot load or a device this machine lacks
stops the command with one message; any skipped input makes the exit status 1.

Only click is imported at start-up; torch and the task code load when a command runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ollagraph.agents.errors import ImageInputError, OllagraphError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ollagraph.agents.config import Settings
    from ollagraph.agents.workers.pool import Worker


def _task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every image command takes; they override the config file for this task."""
    options = [
        click.option("--model", help="Model: a Hugging Face repo id or a local path."),
        click.option("--device", help="auto, cpu, mps, cuda or cuda:N."),
        click.option("--device-mode", help="single, or auto to spread a model over GPUs."),
        click.option("--precision", help="auto, float32, float16 or bfloat16."),
        click.option("--quantization", help="none, int8, int4 or nf4 (CUDA only)."),
        click.option("--batch-size", type=click.IntRange(1, 256), help="Most inputs per pass."),
        click.option(
            "--offline", is_flag=True, default=None, help="Use cached or local models only."
        ),
        click.option(
            "--config", "config_file", type=click.Path(dir_okay=False), help="Config file (TOML)."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON."),
        click.option("-v", "--verbose", is_flag=True, help="Show device, precision and timings."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _task_settings(task: str, config_file: str | None, flags: dict[str, Any]) -> Settings:
    """Settings with this command's flags applied to `task` (flags beat per-task config)."""
    from ollagraph.agents.config import load_settings

    offline = flags.pop("offline", None)
    settings = load_settings(config_file, {"models_offline": offline})
    given = {k: v for k, v in flags.items() if v is not None}
    overrides = {name: dict(values) for name, values in settings.task_overrides.items()}
    overrides.setdefault(task, {}).update(given)
    return replace(settings, task_overrides=overrides)


def _worker(settings: Settings, task: str, verbose: bool) -> Worker[Any, Any]:
    from ollagraph.agents.workers.service import task_placement, worker_for

    source, placement = task_placement(settings, task)
    if verbose:
        click.echo(f"{task}: {source.name} on {placement.label}", err=True)
    for note in placement.notes:
        click.echo(f"Note: {note}.", err=True)
    return worker_for(settings, task)


def _load_inputs(paths: Sequence[str], settings: Settings) -> tuple[list[tuple[str, Any]], int]:
    """Check and decode every input; report the bad ones; return (good, number of bad)."""
    from ollagraph.agents.workers.images import ImageLimits, load_images

    if not paths:
        raise click.UsageError("Give at least one image file, folder or base64 image.")
    good: list[tuple[str, Any]] = []
    bad = 0
    for source, result in load_images(paths, ImageLimits(max_pixels=settings.max_image_pixels)):
        if isinstance(result, ImageInputError):
            click.echo(f"Error: {result.message}", err=True)
            bad += 1
        else:
            good.append((source, result))
    if not good and bad:
        raise ImageInputError("None of the inputs could be read as an image.")
    if not good:
        raise ImageInputError("No images were found in the given folders.")
    return good, bad


def _collect(
    worker: Worker[Any, Any], names: Sequence[str], requests: Sequence[Any], what: str
) -> tuple[list[tuple[int, Any]], int]:
    """Submit all requests at once (so they batch), wait with a progress bar, report failures.

    Returns:
        ([(index of the request, result)] for those that worked, number that failed).

    Raises:
        OllagraphError: The model could not load, or the device failed, for every input.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    futures: list[Future[Any]] = worker.submit_many(requests)
    done: list[tuple[int, Any]] = []
    failed = 0
    progress = Progress(
        TextColumn(f"[bold]{what}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=len(futures) < 2,
    )
    with progress:
        bar = progress.add_task(what, total=len(futures))
        for index, (name, future) in enumerate(zip(names, futures, strict=True)):
            error = future.exception()
            progress.advance(bar)
            if error is None:
                done.append((index, future.result()))
                continue
            if not isinstance(error, OllagraphError):
                raise error
            if not isinstance(error, ImageInputError) and not done and failed == 0:
                raise error  # a model or device problem: the same for every input
            click.echo(f"Error: {name}: {error.message}", err=True)
            failed += 1
    return done, failed


def _report(worker: Worker[Any, Any], count: int, started: float, verbose: bool) -> None:
    if not verbose:
        return
    stats = worker.stats
    seconds = time.perf_counter() - started
    click.echo(
        f"{count} input(s) in {seconds:.2f} s ({count / max(seconds, 1e-9):.2f}/s); "
        f"{stats.batches} forward pass(es), batch sizes {stats.batch_sizes}; "
        f"model load {stats.load_seconds:.2f} s",
        err=True,
    )


def _finish(failed: int) -> None:
    if failed:
        raise click.exceptions.Exit(1)


@click.group()
def image() -> None:
    """Caption, generate, upscale and embed faces in images with local torch models."""


@image.command()
@click.argument("paths", nargs=-1)
@click.option("--prompt", default="", help="A question, or the start of the caption.")
@click.option("--max-tokens", type=click.IntRange(1, 512), default=40, help="Longest caption.")
@_task_options
def caption(
    paths: tuple[str, ...],
    prompt: str,
    max_tokens: int,
    config_file: str | None,
    as_json: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Describe each image in PATHS (files, folders or base64), or answer --prompt about it."""
    from ollagraph.agents.workers.caption import CaptionRequest

    settings = _task_settings("caption", config_file, flags)
    inputs, bad = _load_inputs(paths, settings)
    worker = _worker(settings, "caption", verbose)
    started = time.perf_counter()
    requests = [CaptionRequest(img, prompt=prompt, max_new_tokens=max_tokens) for _, img in inputs]
    done, failed = _collect(worker, [n for n, _ in inputs], requests, "Captioning")
    rows = [{"input": inputs[i][0], "caption": text} for i, text in done]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            click.echo(f"{_short(row['input'])}\t{row['caption']}")
    _report(worker, len(requests), started, verbose)
    _finish(bad + failed)


@image.command()
@click.argument("prompts", nargs=-1, required=True)
@click.option("-n", "--count", type=click.IntRange(1, 64), default=1, help="Images per prompt.")
@click.option("--negative", default="", help="What the pictures should not show.")
@click.option("--width", type=int, help="Width in pixels (multiple of 8).")
@click.option("--height", type=int, help="Height in pixels (multiple of 8).")
@click.option("--steps", type=int, help="Denoising steps (default: the model family's).")
@click.option("--guidance", type=float, help="Guidance scale (default: the model's).")
@click.option("--seed", type=int, help="Seed of the first image; the next ones count up.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output folder.")
@_task_options
def generate(
    prompts: tuple[str, ...],
    count: int,
    negative: str,
    width: int | None,
    height: int | None,
    steps: int | None,
    guidance: float | None,
    seed: int | None,
    output: str | None,
    config_file: str | None,
    as_json: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Draw pictures of each of PROMPTS and save them as PNG files (their paths are printed)."""
    from ollagraph.agents.workers.generate import GenerateRequest
    from ollagraph.tools.images import image_dir

    settings = _task_settings("generate", config_file, flags)
    folder = Path(output).expanduser() if output else image_dir(settings)
    worker = _worker(settings, "generate", verbose)
    requests = [
        GenerateRequest(
            prompt=text,
            output_dir=folder,
            negative_prompt=negative,
            width=width,
            height=height,
            steps=steps,
            guidance=guidance,
            seed=None if seed is None else seed + n,
        )
        for n, text in enumerate(p for p in prompts for _ in range(count))
    ]
    started = time.perf_counter()
    done, failed = _collect(worker, [r.prompt for r in requests], requests, "Generating")
    if as_json:
        rows = [{"prompt": r.prompt, "path": str(r.path), "seed": r.seed} for _, r in done]
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for _, result in done:
            click.echo(str(result.path))
    _report(worker, len(requests), started, verbose)
    _finish(failed)


@image.command()
@click.argument("paths", nargs=-1)
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output folder.")
@click.option("--tile", type=click.IntRange(32, 4096), help="Tile size in input pixels.")
@_task_options
def upscale(
    paths: tuple[str, ...],
    output: str | None,
    tile: int | None,
    config_file: str | None,
    as_json: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Upscale each image in PATHS (x2 or x4, by the model) and save PNGs next to --output."""
    from ollagraph.agents.workers.upscale import UpscaleRequest
    from ollagraph.tools.images import image_dir, save_upscaled

    settings = _task_settings("upscale", config_file, flags)
    inputs, bad = _load_inputs(paths, settings)
    folder = Path(output).expanduser() if output else image_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    worker = _worker(settings, "upscale", verbose)
    if tile is not None:
        runner: Any = worker.runner
        runner.tile = tile
    started = time.perf_counter()
    requests = [UpscaleRequest(img) for _, img in inputs]
    done, failed = _collect(worker, [n for n, _ in inputs], requests, "Upscaling")
    rows: list[dict[str, Any]] = []
    for index, bigger in done:
        name, original = inputs[index]
        path = save_upscaled(bigger, original, name, folder)
        rows.append({"input": name, "path": str(path), "size": [bigger.width, bigger.height]})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            click.echo(f"{_short(row['input'])}\t{row['path']}")
    _report(worker, len(requests), started, verbose)
    _finish(bad + failed)


@image.command()
@click.argument("paths", nargs=-1)
@click.option("--crops", is_flag=True, help="The inputs are aligned face crops: skip detection.")
@click.option("--similar", "k", type=click.IntRange(1, 50), help="Search the store instead.")
@click.option("--db", help="Face store (DuckDB file; default: faces.duckdb in the state dir).")
@_task_options
def faces(
    paths: tuple[str, ...],
    crops: bool,
    k: int | None,
    db: str | None,
    config_file: str | None,
    as_json: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Find the faces in PATHS and store their embeddings, or with --similar K list look-alikes."""
    from ollagraph.agents.workers.faces import FaceRequest
    from ollagraph.tools.face_store import FaceStore
    from ollagraph.tools.images import faces_db

    settings = _task_settings("faces", config_file, flags)
    store_path = Path(db).expanduser() if db else faces_db(settings)
    if k is not None and not store_path.exists():
        raise OllagraphError(
            f"The face store {store_path} does not exist yet.",
            hint="Store faces first: agent image faces PHOTO...",
        )
    inputs, bad = _load_inputs(paths, settings)
    worker = _worker(settings, "faces", verbose)
    started = time.perf_counter()
    requests = [FaceRequest(img, detect=not crops) for _, img in inputs]
    done, failed = _collect(worker, [n for n, _ in inputs], requests, "Embedding faces")
    from ollagraph.agents.workers.service import task_policy

    model = task_policy(settings, "faces")[0]
    rows: list[dict[str, Any]] = []
    with FaceStore(store_path) as store:
        for index, found in done:
            name = inputs[index][0]
            if k is None:
                ids = store.add(_short(name), found, model=model) if found else []
                rows.append({"input": name, "faces": len(found), "ids": ids})
            else:
                matches = [
                    store.find_similar(face.embedding, k=k, model=model) for face in found[:1]
                ]
                rows.append(
                    {
                        "input": name,
                        "matches": [
                            {"id": m.id, "source": m.source, "distance": round(m.distance, 4)}
                            for m in (matches[0] if matches else [])
                        ],
                    }
                )
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            if k is None:
                click.echo(f"{_short(row['input'])}\t{row['faces']} face(s) stored")
            elif not row["matches"]:
                click.echo(f"{_short(row['input'])}\tno face found")
            else:
                best = ", ".join(f"{m['source']} ({m['distance']:.3f})" for m in row["matches"])
                click.echo(f"{_short(row['input'])}\t{best}")
    _report(worker, len(requests), started, verbose)
    _finish(bad + failed)


def _short(name: str) -> str:
    from ollagraph.agents.workers.images import label

    return label(name)


__all__ = ["image"]
