"""Benchmark of a round's bookkeeping on a large pool: everything but model compute and Label
Studio's own time.

Builds a synthetic project of N items straight in the label store (no images): ~5% human labels
(10% of them from two annotators), ~30% current machine labels and ~20% superseded ones, picks
for ten rounds (30% held out), a task and sync cursor per pick, a pending batch of which half
was answered since the last sync, near-duplicate groups, and a predictions file of every item
without a person's label (random probabilities). Then times, on it:

- the sync, accept, select and push steps, called as a round calls them, with Label Studio
  replaced at the boundary by an in-memory fake (``FakeStudio``: the same JSON the server
  answers, at once);
- ``labelloop status`` as a user runs it (a subprocess, wall time).

Goals: status under 2 s at 100,000 items and under 10 s at 1,000,000; a round's bookkeeping
(the steps' sum) under 60 s at 1,000,000.

    PYTHONPATH=. .venv/bin/python scripts/bench_bookkeeping.py [--items 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from labeling.studio.opinions import blind_checked, double_checked
from labeling.studio.project import ImageSource, StudioProject
from labeling.tasks.classification import choice_result
from labeling.tasks.registry import get_task_type
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.round import accept, push, select, sync

CLASSES = [str(d) for d in range(10)]
PROJECT_ID = 1
ROUNDS = 10
BATCH = 1000  # [loop] batch_size: items sent to people per round
CHAMPION = "9"  # the model whose machine labels are in force
CHALLENGER = "10"  # promoted this round: its predictions are the round's
STAMP = "2026-12-01T10:00:00.000000Z"


class _Response:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class FakeStudio:
    """The slice of ``labeling.studio.connection.Studio`` the round's steps use, over tasks
    held in memory: listings answer the JSON Label Studio answers, writes land at once."""

    url = "http://fake-studio"
    user_id, user_email, version = 1, "bench@example.com", "1.20"

    def __init__(self, tasks: dict[int, dict]):
        self.tasks = tasks
        self.next_id = max(tasks, default=0) + 1
        self.client = _Response(
            users=_Response(list=lambda: [_Response(id=u, email=f"a{u}@example.com",
                                                    username=None) for u in (1, 2, 3)]),
            projects=_Response(import_tasks=self._import_tasks,
                               import_predictions=self._import_predictions,
                               update=lambda **kw: None),
            tasks=_Response(update=lambda **kw: None))

    @contextmanager
    def errors(self, action):
        yield

    def read(self, action, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def get_json(self, path, params=None, *, action):
        params = params or {}
        if path != "api/tasks":
            return {"id": PROJECT_ID, "model_version": ""}
        ids = sorted(self.tasks)
        if "query" in params:
            wanted = set(json.loads(params["query"])["selectedItems"]["included"])
            ids = [i for i in ids if i in wanted]
        size, page = int(params["page_size"]), int(params["page"])
        return {"total": len(ids),
                "tasks": [self.tasks[i] for i in ids[(page - 1) * size: page * size]]}

    def _import_tasks(self, *, id, request, **_):
        out = []
        for task in request:
            tid, self.next_id = self.next_id, self.next_id + 1
            versions = ",".join(p["model_version"] for p in task.get("predictions", []))
            self.tasks[tid] = {"id": tid, "data": task["data"], "updated_at": STAMP,
                               "annotations_ids": "", "total_annotations": 0,
                               "cancelled_annotations": 0,
                               "predictions_model_versions": versions}
            out.append(tid)
        return _Response(task_ids=out, prediction_count=sum(
            len(t.get("predictions", [])) for t in request))

    def _import_predictions(self, *, id, request, **_):
        for p in request:
            task = self.tasks[p["task"]]
            task["predictions_model_versions"] = p["model_version"]


def _dt(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")


def build(root: Path, n: int, *, seed: int = 0) -> tuple[Path, dict[int, dict], dict]:
    """The synthetic project of ``n`` items under ``root``; returns (config path, the fake
    Label Studio's tasks, the predict step's record)."""
    rng = np.random.default_rng(seed)
    images = root / "data" / "images"
    images.mkdir(parents=True)
    config_path = init_project(root, images=images, classes=CLASSES, name="bench")
    text = config_path.read_text()
    text = text.replace("batch_size = 100\n", f"batch_size = {BATCH}\n")
    text = text.replace("reference_error = 0.0", "reference_error = 0.01")
    text = text.replace("double_check = 0.0", "double_check = 0.05")
    text = text.replace("blind_check = 0.0", "blind_check = 0.05")
    config_path.write_text(text)
    project = open_project(find_config(root))
    db = Path(project.store.url.removeprefix("sqlite:///"))
    predictions_dir, pointer = project.predictions_dir, project.registry.pointer_path
    project.close()

    now = datetime.now(UTC)
    keys = [f"sha256:{i:064x}" for i in range(n)]
    paths = [str(images / f"{i:07d}.png") for i in range(n)]
    status = np.full(n, "ok", dtype=object)
    order = rng.permutation(n)
    n_human, n_machine, n_old = int(0.05 * n), int(0.30 * n), int(0.20 * n)
    human = order[:n_human]
    skipped = order[n_human:n_human + n // 500]
    tied = order[n_human + n // 500:n_human + n // 500 + n // 10000]
    pending = order[n_human + n // 500 + n // 10000:][:BATCH]
    rest = order[n_human + n // 500 + n // 10000 + BATCH:]
    machine, old = rest[:n_machine], rest[n_machine:n_machine + n_old]
    status[skipped], status[tied] = "skipped", "disagreement"
    truth = rng.integers(0, len(CLASSES), n)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: rebuilt if lost
    con.executemany(
        "INSERT INTO items (id, key, path, size_bytes, width, height, status, added_at) "
        "VALUES (?, ?, ?, 100, 28, 28, ?, ?)",
        ((i + 1, keys[i], paths[i], status[i], _dt(now)) for i in range(n)))
    # Near-duplicates: 1% of the items share a group with the item before them.
    dup = set(rng.choice(n - 1, size=n // 100, replace=False).tolist())
    blank = bytes(256)
    con.executemany("INSERT INTO item_thumbs (item_id, thumb, group_key) VALUES (?, ?, ?)",
                    ((i + 1, blank, keys[i - 1] if i in dup else keys[i]) for i in range(n)))
    for r in range(1, ROUNDS + 1):
        stats = {"done": ["sync", "train", "promote", "predict", "accept", "select", "push",
                          "monitor", "tune"],
                 "accept": {"accepted": n_machine, "coverage": 0.3, "thresholds": None,
                            "dataset": None, "human_error": {"rate_ub": 0.05}},
                 "monitor": {"warnings": [], "annotator_quality": []}}
        con.execute("INSERT INTO rounds (id, started_at, finished_at, status, stats) "
                    "VALUES (?, ?, ?, 'done', ?)", (r, _dt(now), _dt(now), json.dumps(stats)))
    con.execute("INSERT INTO rounds (id, started_at, status, stats) VALUES (?, ?, 'running', ?)",
                (ROUNDS + 1, _dt(now), json.dumps({"done": []})))

    labels = []
    for j in old:  # an earlier model's labels, withdrawn since
        labels.append((int(j) + 1, CLASSES[truth[j]], "machine", "labelloop", "8", 0.99, 8,
                       _dt(now), _dt(now), "{}"))
    for j in machine:
        labels.append((int(j) + 1, CLASSES[truth[j]], "machine", "labelloop", CHAMPION, 0.99, 9,
                       _dt(now), None, "{}"))
    # Picks: the human-labeled items, the tied and skipped ones, and the pending batch.
    picked = np.concatenate([human, tied, skipped, pending])
    holdout = rng.random(len(picked)) < 0.3
    holdout[-BATCH:] = rng.random(BATCH) < 0.3
    audit = holdout & (rng.random(len(picked)) < 0.5)
    human_keys = [keys[j] for j in human]
    checked = double_checked(human_keys, 0.05) | blind_checked(human_keys, 0.05, after=0.05)
    pick_rows, task_rows, cursor_rows, annotation_rows = [], [], [], []
    fake: dict[int, dict] = {}
    ann_id = 1
    for p, j in enumerate(picked):
        j = int(j)
        tid = 1000 + p
        round_id = ROUNDS if p >= len(picked) - BATCH else 1 + p % (ROUNDS - 1)
        reason = "audit" if audit[p] else ("random" if holdout[p] else "strategy")
        pick_rows.append((j + 1, round_id, reason, int(holdout[p]),
                          CLASSES[truth[j]] if reason == "audit" else None,
                          CHAMPION if reason == "audit" else None, _dt(now)))
        task_rows.append((PROJECT_ID, j + 1, tid, round_id, "v" + CHAMPION, _dt(now)))
        if p < n_human:  # the double and blind checks, and some more, had two people
            two = keys[j] in checked or rng.random() < 0.05
            outcome, who = "labeled", [1, 2] if two else [1]
        elif p < n_human + len(tied):
            outcome, who = "disagreement", [1, 2]
        elif p < n_human + len(tied) + len(skipped):
            outcome, who = "skipped", [1]
        else:
            outcome, who = "pending", []
        ids = list(range(ann_id, ann_id + len(who)))
        for a, user in zip(ids, who, strict=True):
            choice = CLASSES[truth[j]] if outcome != "disagreement" or user == 1 else \
                CLASSES[(truth[j] + 1) % len(CLASSES)]
            annotation_rows.append((a, PROJECT_ID, tid, j + 1, user, f"a{user}@example.com",
                                    None if outcome == "skipped" else choice,
                                    int(outcome == "skipped"), 3.0, CLASSES[truth[j]],
                                    "v" + CHAMPION, 0, STAMP, STAMP))
        ann_id += len(who)
        cursor_rows.append((PROJECT_ID, tid, j + 1, STAMP, ",".join(map(str, ids)), outcome,
                            CLASSES[truth[j]] if outcome == "labeled" else None, _dt(now)))
        fake[tid] = {"id": tid, "data": {"image": ImageSource.local(images).url_for(paths[j]),
                                         "item_key": keys[j]},
                     "updated_at": STAMP, "annotations_ids": ",".join(map(str, ids)),
                     "total_annotations": int(outcome != "skipped") * len(who),
                     "cancelled_annotations": int(outcome == "skipped"),
                     "predictions_model_versions": "v" + CHAMPION, "annotations": [],
                     "predictions": []}
        if outcome == "labeled":
            extra = {"studio": {"project": PROJECT_ID, "task": tid}, "annotation_ids": ids,
                     "annotators": [f"a{u}@example.com" for u in who]}
            labels.append((j + 1, CLASSES[truth[j]], "human", "a1@example.com", None, None,
                           None, _dt(now), None, json.dumps(extra)))
    # Half the pending batch was answered in Label Studio since the last sync.
    for tid in sorted(fake)[-BATCH:][::2]:
        task = fake[tid]
        j = int(picked[tid - 1000])
        task.update(updated_at="2026-12-02T10:00:00.000000Z", annotations_ids=str(ann_id),
                    total_annotations=1, annotations=[{
                        "id": ann_id, "result": choice_result(CLASSES[truth[j]]),
                        "was_cancelled": False, "completed_by": 1, "lead_time": 2.0,
                        "created_at": "2026-12-02T10:00:00Z",
                        "updated_at": "2026-12-02T10:00:00Z"}])
        ann_id += 1
    con.executemany(
        "INSERT INTO labels (item_id, label, source, who, model_version, confidence, round_id, "
        "created_at, superseded_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", labels)
    con.executemany(
        "INSERT INTO selections (item_id, round_id, reason, holdout, machine_label, "
        "machine_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", pick_rows)
    con.executemany(
        "INSERT INTO tasks (project_id, item_id, task_id, round_id, model_version, created_at, "
        "deleted) VALUES (?, ?, ?, ?, ?, ?, 0)", task_rows)
    con.executemany(
        "INSERT INTO studio_task_sync (project_id, task_id, item_id, updated_at, annotation_ids,"
        " outcome, label, deleted, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)", cursor_rows)
    con.executemany(
        "INSERT INTO studio_annotations (annotation_id, project_id, task_id, item_id, user_id, "
        "who, choice, was_cancelled, lead_time, predicted, prediction_version, "
        "changed_prediction, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", annotation_rows)
    con.commit()
    con.close()

    # The champion as the registry's last read left it, and its predictions of the pool.
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"version": CHALLENGER, "metrics": {"accuracy": 0.95}}))
    human_set = set(human.tolist())
    held = {int(j) for j, h in zip(picked, holdout, strict=True) if h}
    rows = [i for i in range(n) if (i not in human_set or i in held) and status[i] != "skipped"]
    # Right on 95% of the items, mostly confident: enough for thresholds to accept many.
    right = rng.random(len(rows)) < 0.95
    chosen = np.where(right, truth[rows], rng.integers(0, len(CLASSES), len(rows)))
    sure = np.where(right, rng.beta(20, 1, size=len(rows)),
                    rng.beta(1, 6, size=len(rows)))[:, None]
    probs = (rng.dirichlet(np.full(len(CLASSES), 0.05), size=len(rows)) * (1 - sure)
             + sure * np.eye(len(CLASSES))[chosen]).astype(np.float32)
    file = predictions_dir / f"round{ROUNDS + 1}-v{CHALLENGER}.npz"
    np.savez(file, keys=np.array([keys[i] for i in rows]), probs=probs,
             embeddings=np.zeros((len(rows), 0)))
    return config_path, fake, {"predicted": len(rows), "version": CHALLENGER, "file": str(file)}


def time_round(config_path: Path, fake: dict[int, dict], predicted: dict) -> dict[str, float]:
    """Seconds per step, as ``pipeline.round.steps`` runs them (Label Studio faked)."""
    project = open_project(find_config(config_path.parent))
    images = project.config.images_dir
    project.studio = (FakeStudio(fake), StudioProject(
        PROJECT_ID, "bench", tuple(CLASSES), ImageSource.local(images),
        get_task_type("classification")))
    round_id = ROUNDS + 1
    steps = {
        "sync": lambda: sync.sync(project, round_id),
        "accept": lambda: accept.auto_accept(project, round_id, predicted),
        "select": lambda: select.select_batch(project, round_id, predicted),
        "push": lambda: push.push(project, round_id, predicted),
    }
    out = {}
    for name, step in steps.items():
        start, cpu = time.perf_counter(), time.process_time()
        record = step()
        out[name] = (time.perf_counter() - start, time.process_time() - cpu)
        brief = {k: v for k, v in record.items() if isinstance(v, int | float | str)}
        print(f"  {name}: {out[name][0]:.2f} s (cpu {out[name][1]:.2f} s)  {brief}", flush=True)
    project.close()
    return out


def time_status(config_path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``labelloop status`` run as a user runs it. The CPU time is
    the figure to compare on a busy machine: other processes stretch the wall time."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "--config",
                    str(config_path)], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, default=None,
                        help="build under this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    table = []
    for n in args.items:
        with tempfile.TemporaryDirectory() as tmp:
            root = (args.keep or Path(tmp)) / f"pool{n}"
            start = time.perf_counter()
            config_path, fake, predicted = build(root, n)
            built = time.perf_counter() - start
            print(f"{n:,} items: built in {built:.1f} s", flush=True)
            status = time_status(config_path)
            print(f"  status: {status[0]:.2f} s (cpu {status[1]:.2f} s)", flush=True)
            steps = time_round(config_path, fake, predicted)
            table.append((n, built, status, steps))
    names = list(table[0][3]) if table else []
    print("\nwall seconds (CPU seconds)")
    print("| items | build | status | " + " | ".join(names) + " | round bookkeeping |")
    print("|---:|---:|---:|" + "---:|" * len(names) + "---:|")
    for n, built, status, steps in table:
        total = [sum(v[i] for v in steps.values()) for i in (0, 1)]
        print(f"| {n:,} | {built:.1f} | {status[0]:.2f} ({status[1]:.2f}) | "
              + " | ".join(f"{steps[k][0]:.2f} ({steps[k][1]:.2f})" for k in names)
              + f" | {total[0]:.1f} ({total[1]:.1f}) |")


if __name__ == "__main__":
    main()
