"""From an annotation submitted in Label Studio to the label in labelloop's store, with the
model backend's webhooks on: the time a person waits before their answer counts.

Everything is real and run as a user runs it: a digits project (sklearn's digits as PNGs) on
an embedded Label Studio, ``labelloop run`` (the scheduled loop, a long interval so only
webhooks can make it sync), ``labelloop serve`` and ``labelloop studio connect``. Then, one at
a time, an annotation is created through the API on a pushed task (what the Submit button
does), and the store is polled until that item has a person's label. Every latency is printed
with the median and the worst (goal: median under 5 s). Without the backend connected, the
same label waits for the loop's next round (here 30 minutes).

    .venv/bin/python scripts/bench_webhook.py [--n 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from labeling.store import LabelStore
from labeling.studio.connection import connect
from labeling.studio.remote import item_key_of, iter_tasks
from labeling.tasks.classification import choice_result
from pipeline.datasets import export_dataset
from pipeline.project.config import load_config
from pipeline.project.studio import project_title

LABELLOOP = str(Path(sys.executable).with_name("labelloop"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="annotations to time")
    args = parser.parse_args()
    started: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            _run(folder, args.n, started)
        finally:
            for proc in started:  # only what this script started, by PID
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
            subprocess.run([LABELLOOP, "studio", "stop", "--config", str(folder)],
                           capture_output=True)


def _run(folder: Path, n: int, started: list) -> None:
    export_dataset("digits", folder / "data")
    studio_port, backend_port = _free_port(), _free_port()
    _cli("init", "--images", str(folder / "data" / "images"), "--name", "webhook-bench",
         "--classes", ",".join(str(d) for d in range(10)), "--folder", str(folder))
    config = folder / "labelloop.toml"
    text = config.read_text().replace("port = 8080", f"port = {studio_port}")
    config.write_text(text.replace("backend_port = 9090", f"backend_port = {backend_port}"))
    _cli("ingest", "--config", str(folder))
    _cli("studio", "start", "--config", str(folder))
    log = open(folder / "processes.log", "ab")
    loop = subprocess.Popen([LABELLOOP, "run", "--every", "30m", "--config", str(folder)],
                            stdout=log, stderr=log)
    started.append(loop)
    cfg = load_config(config)
    store = LabelStore(cfg.store_url)
    while not store.rounds() or store.running_round() is not None:  # the first round pushes
        assert loop.poll() is None, (folder / "processes.log").read_text()
        time.sleep(1)
    serve = subprocess.Popen([LABELLOOP, "serve", "--config", str(folder)], stdout=log,
                             stderr=log)
    started.append(serve)
    url = f"http://127.0.0.1:{backend_port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    _cli("studio", "connect", "--config", str(folder))
    studio = connect(f"http://127.0.0.1:{studio_port}",
                     (cfg.studio_dir / "token").read_text().strip())
    project_id = _project_id(studio, project_title(cfg))
    tasks = [t for t in iter_tasks(studio, project_id, include="id,data") if item_key_of(t)]
    print(f"{len(tasks)} pushed tasks; timing {min(n, len(tasks))} annotations, one at a time")
    latencies = []
    for task in tasks[:n]:
        key = item_key_of(task)
        start = time.monotonic()
        with studio.errors("annotating"):
            studio.client.annotations.create(id=int(task["id"]), result=choice_result("3"))
        while key not in store.current_labels(sources=("human",)):
            if time.monotonic() - start > 120:
                raise SystemExit(f"no label after 120 s for task {task['id']}")
            time.sleep(0.05)
        latencies.append(time.monotonic() - start)
        print(f"  task {task['id']}: {latencies[-1]:.2f} s", flush=True)
    median = statistics.median(latencies)
    print(f"annotation -> label in the store: median {median:.2f} s, worst "
          f"{max(latencies):.2f} s, best {min(latencies):.2f} s over {len(latencies)} "
          f"(goal: median < 5 s: {'met' if median < 5 else 'MISSED'})")
    store.close()


def _project_id(studio, title: str) -> int:
    found = studio.get_json("api/projects", {"title": title}, action="finding the project")
    rows = found.get("results", []) if isinstance(found, dict) else found
    return int(next(p["id"] for p in rows if p["title"] == title))


def _cli(*args: str) -> None:
    done = subprocess.run([LABELLOOP, *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"labelloop {' '.join(args)} failed: {done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
