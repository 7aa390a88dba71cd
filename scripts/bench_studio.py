"""Benchmark of the Label Studio integration against a real server.

1. push N tasks with predictions through labelloop's ``push_tasks`` into a fresh project, and
   the same N tasks as ONE raw SDK bulk import into another fresh project: tasks/s of each and
   the ratio (goal: labelloop within 1.5x of the raw import, i.e. limited by Label Studio);
2. the simulated annotator creates M annotations through the API (annotations/s, for scale);
3. ``sync_annotations`` pulls them into the label store: annotations/s; then a second sync with
   nothing new (the incremental path).

Server: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY from the environment if set, else an embedded
server started in a temporary folder on a free loopback port (stopped at the end).

    .venv/bin/python scripts/bench_studio.py [--tasks 5000] [--annotations 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from labeling.store import LabelStore, NewItem
from labeling.studio import server
from labeling.studio.annotator_sim import simulate_annotations
from labeling.studio.connection import connect
from labeling.studio.project import ImageSource, ensure_project
from labeling.studio.push import PushItem, push_tasks
from labeling.studio.sync import sync_annotations
from labeling.tasks.classification import choice_result, label_config

CLASSES = ("cat", "dog", "bird", "fish")


def make_items(folder: Path, n: int, seed: int) -> list[NewItem]:
    """``n`` distinct tiny PNGs (8x8 grey noise) in ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
        key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(NewItem(key, str(path.resolve()), path.stat().st_size, 8, 8))
    return items


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--annotations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="labelloop-bench-") as tmp:
        tmp = Path(tmp)
        images_dir = tmp / "data" / "images"
        url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
        data_dir = None
        if not (url and key):
            data_dir = tmp / "studio"
            images_dir.mkdir(parents=True)
            t0 = time.perf_counter()
            info = server.start(data_dir, port=free_port(), images_dir=images_dir,
                                executable=server.resolve_executable())
            print(f"embedded Label Studio started at {info.url} in "
                  f"{time.perf_counter() - t0:.1f} s")
            url, key = info.url, info.token_file.read_text().strip()
        try:
            return run(url, key, tmp, images_dir / "bench", args)
        finally:
            if data_dir is not None:
                server.stop(data_dir)


def run(url: str, key: str, tmp: Path, folder: Path, args) -> int:
    studio = connect(url, key, timeout=600)
    print(f"Label Studio {studio.version} at {studio.url}")
    items = make_items(folder, args.tasks, args.seed)
    store = LabelStore(tmp / "labels.db")
    store.add_items(items)
    rng = np.random.default_rng(args.seed)
    truth = {i.key: CLASSES[int(rng.integers(len(CLASSES)))] for i in items}
    predicted = {i.key: (CLASSES[int(rng.integers(len(CLASSES)))],
                         float(rng.uniform(0.25, 1.0))) for i in items}
    source = ImageSource.local(folder.parent)
    stamp = time.strftime("%H%M%S")

    # Raw SDK: the same task JSON labelloop sends, in one bulk import, retries off.
    raw_project = studio.client.projects.create(title=f"bench raw {stamp}",
                                                label_config=label_config(CLASSES))
    raw_tasks = [{"data": {"image": source.url_for(i.path), "item_key": i.key},
                  "predictions": [{"model_version": "bench-v1", "score": predicted[i.key][1],
                                   "result": choice_result(predicted[i.key][0])}]}
                 for i in items]
    t0 = time.perf_counter()
    response = studio.client.projects.import_tasks(
        id=raw_project.id, request=raw_tasks, return_task_ids=True,
        request_options={"max_retries": 0, "timeout_in_seconds": 600})
    raw_s = time.perf_counter() - t0
    assert len(response.task_ids) == len(items)

    project = ensure_project(studio, f"bench labelloop {stamp}", CLASSES, images=source)
    push_items = [PushItem(i.key, i.path, *predicted[i.key]) for i in items]
    t0 = time.perf_counter()
    pushed = push_tasks(studio, store, project, push_items, model_version="bench-v1",
                        batch_size=args.batch_size)
    push_s = time.perf_counter() - t0
    assert len(pushed.created) == len(items)
    t0 = time.perf_counter()
    again = push_tasks(studio, store, project, push_items, model_version="bench-v1")
    repush_s = time.perf_counter() - t0
    assert not again.created

    n = len(items)
    print(f"push, labelloop ({args.batch_size}/batch, with de-dup check, read-back, store): "
          f"{n} tasks in {push_s:.2f} s = {n / push_s:.0f} tasks/s")
    print(f"push, raw SDK (one bulk import):  {n} tasks in {raw_s:.2f} s = "
          f"{n / raw_s:.0f} tasks/s")
    print(f"ratio labelloop / raw: {push_s / raw_s:.2f}x (goal <= 1.5x)")
    print(f"push again (all {n} already there, nothing sent): {repush_s:.2f} s")

    t0 = time.perf_counter()
    sim = simulate_annotations(studio, project, truth, noise=0.05, skip=0.02,
                               limit=args.annotations, seed=args.seed)
    sim_s = time.perf_counter() - t0
    made = sim.answered + sim.skipped
    print(f"annotator sim: {made} annotations ({sim.skipped} skips) in {sim_s:.1f} s = "
          f"{made / sim_s:.0f} annotations/s (one POST each)")

    t0 = time.perf_counter()
    report = sync_annotations(studio, store, project)
    sync_s = time.perf_counter() - t0
    print(f"sync: {report.annotations} annotations on {report.read} of {report.tasks} tasks in "
          f"{sync_s:.2f} s = {report.annotations / sync_s:.0f} annotations/s "
          f"({len(report.labeled)} labels written, {len(report.skipped)} skipped)")
    t0 = time.perf_counter()
    idle = sync_annotations(studio, store, project)
    print(f"sync again, nothing new: {idle.read} tasks read in {time.perf_counter() - t0:.2f} s")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
