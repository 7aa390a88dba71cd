"""``labelloop serve``'s /predict latency against the same prediction called in-process.

Builds a digits project (sklearn's 1,797 digits as PNGs), trains a small CNN for a few epochs
and makes it the champion, then serves it with uvicorn on 127.0.0.1 (the same app
``labelloop serve`` runs) and times, for batches of 1 and of 100 pool tasks:

* in-process: ``pipeline.round.predict.predict_files`` on the tasks' files, the model loaded;
* served: ``POST /predict`` with those tasks as Label Studio sends them (``data.item_key``),
  over HTTP, answers parsed.

Goal (issue: Label Studio as its users live in it): served <= 1.2 x in-process + 20 ms. Every
repetition is timed; the medians are compared. Label Studio itself is not needed: the backend
is given its project id. Run: ``.venv/bin/python scripts/bench_serve.py [--reps 20]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from pipeline.backend.app import make_app
from pipeline.backend.rounds import RoundRunner
from pipeline.backend.service import Backend
from pipeline.datasets import export_dataset, read_labels_csv
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.studio import image_source
from pipeline.project.workspace import find_config, init_project
from pipeline.round.predict import predict_files
from pipeline.task_images import TaskImages
from training.checkpoint import save_checkpoint
from training.params import TrainParams

STUDIO_PROJECT = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="timed calls per batch size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = _champion_project(Path(tmp))
        backend = Backend(project, studio_project_id=STUDIO_PROJECT,
                          images=TaskImages(project.store, image_source(project.config),
                                            Path(tmp) / "cache", studio_url="http://127.0.0.1:1",
                                            api_key=None),
                          rounds=RoundRunner(Path(tmp) / "labelloop.toml", Path(tmp) / "lock",
                                             Path(tmp) / "rounds.log"))
        loaded = backend.champion.current()
        url = _serve(backend)
        items = project.store.items(status="ok")
        print(f"champion {loaded.model_version} (small CNN), {len(items)} pool items, "
              f"{args.reps} timed calls per batch size")
        print(f"{'batch':>5} {'in-process ms':>14} {'served ms':>10} {'ratio':>6} "
              f"{'goal ms':>8}  verdict")
        with httpx.Client(timeout=120) as client:
            for size in (1, 100):
                batch = items[:size]
                tasks = [{"id": n, "data": {"item_key": i.key, "image": ""}}
                         for n, i in enumerate(batch)]
                body = {"tasks": tasks, "project": f"{STUDIO_PROJECT}.0"}

                def local(batch=batch):
                    predict_files(project, loaded.model, [i.path for i in batch],
                                  [i.key for i in batch], embeddings=False, progress=False)

                def served(body=body, size=size):
                    answer = client.post(f"{url}/predict", json=body)
                    answer.raise_for_status()
                    assert len(answer.json()["results"]) == size

                inproc = _median_ms(local, args.reps)
                remote = _median_ms(served, args.reps)
                goal = 1.2 * inproc + 20
                print(f"{size:>5} {inproc:>14.1f} {remote:>10.1f} {remote / inproc:>6.2f} "
                      f"{goal:>8.1f}  {'met' if remote <= goal else 'MISSED'}")
        project.close()


def _champion_project(folder: Path):
    data = folder / "data"
    export_dataset("digits", data)
    init_project(folder, images=data / "images", classes=[str(d) for d in range(10)],
                 name="bench-serve")
    project = open_project(find_config(folder))
    ingest_folder(project.store, project.config.images_dir)
    rows = read_labels_csv(data / "labels.csv")[:300]
    params = TrainParams(epochs=3)
    model = project.task.train([str(p) for p, _ in rows], [label for _, label in rows],
                               project.classes, params)
    path = folder / "bench.pt"
    save_checkpoint(model, path)
    version = project.registry.register(path, params={}, metrics={}, snapshot="bench-serve")
    project.registry.promote(version, reason="bench_serve: the model under test")
    return project


def _serve(backend: Backend) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(backend), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the backend did not start")


def _median_ms(call, reps: int) -> float:
    call()  # warm: first-call costs (worker start, caches) are not what a user waits for
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


if __name__ == "__main__":
    main()
