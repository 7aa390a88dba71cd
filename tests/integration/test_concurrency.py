"""Two labelloop commands on one workspace at once, through the real CLI.

``round`` and ``tune`` exclude each other with the workspace lock: the second is refused with
exit code 3 and one line naming the holder, and writes nothing. ``export`` takes no lock: it
reads the store in one statement, so each export is a state some transaction committed, never
half of one, while a round (or a writer as busy as a round's accept step) writes labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from labeling.schema import Label
from labeling.store import LabelStore, NewItem, NewLabel, StoreUnavailable
from labeling.studio.project import find_projects
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.export import export_labels
from pipeline.files import EXPORT_MANIFEST
from pipeline.project.lock import WorkspaceLock, read_holder
from pipeline.project.project import open_project
from pipeline.project.studio import connect_studio, project_title
from pipeline.project.workspace import find_config
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round
from tests.integration.cli import LABELLOOP, REPO, cli_env, labelloop

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Files that opening a project may touch without changing what it holds: the lock itself
# and SQLite's write-ahead log of the label store (compared by content instead).
VOLATILE = {"lock", "labels.db", "labels.db-wal", "labels.db-shm"}
_n = itertools.count()




def workspace_files(workspace: Path) -> dict[str, str | None]:
    """Every folder and file of the workspace but ``VOLATILE`` ones: path -> sha256 (None for
    a folder)."""
    found: dict[str, str | None] = {}
    for path in sorted(workspace.rglob("*")):
        if path.name in VOLATILE:
            continue
        rel = str(path.relative_to(workspace))
        found[rel] = None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def store_state(store: LabelStore) -> dict:
    return {"labels": {k: (v.label, v.source) for k, v in store.current_labels().items()},
            "rounds": [(r["id"], r["status"]) for r in store.rounds()]}


def duplicate_tasks(project) -> int:
    """Label Studio tasks beyond one per item, over the project's Label Studio projects."""
    studio = connect_studio(project.config, project.env)
    keys: Counter[str | None] = Counter()
    for sp in find_projects(studio, project_title(project.config)):
        keys.update(item_key_of(t) for t in iter_tasks(studio, sp["id"], include="id,data",
                                                      all_fields=True))
    return sum(n - 1 for n in keys.values())


@pytest.mark.parametrize("holder, command", [
    ("labelloop round", ("tune", "--trials", "1")),
    ("labelloop tune", ("round", "--quiet")),
], ids=["tune-while-round", "round-while-tune"])
def test_tune_and_round_refuse_a_workspace_the_other_holds(
        studio_server, digits_project, ledger, holder, command):
    folder = digits_project(f"cc-{command[0]}-{next(_n)}")
    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    project = open_project(find_config(folder), env=env)
    workspace = project.config.workspace_dir
    # Human labels, which a refused command must leave as they are.
    keys = sorted(i.key for i in project.store.items())[:60]
    project.store.add_labels([NewLabel(k, str(i % 10), "human", who="oracle")
                              for i, k in enumerate(keys)])
    files, state = workspace_files(workspace), store_state(project.store)
    with WorkspaceLock(workspace / "lock", command=holder):
        proc = labelloop(*command, "--config", str(folder), env=env)
    ledger.fault(f"{command[0]} while `{holder}` holds the lock",
                 outcome=f"refused, exit {proc.returncode}",
                 lost_labels=len(state["labels"]) - len(project.store.current_labels()),
                 duplicate_tasks=duplicate_tasks(project))
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"pid {os.getpid()}" in lines[0] and f"`{holder}`" in lines[0]
    assert workspace_files(workspace) == files
    assert store_state(project.store) == state
    assert not (workspace / "optuna.db").exists() and not project.tuned_params_path.exists()
    project.close()


def test_tune_during_a_running_round_is_refused_and_exports_see_committed_states(
        studio_server, digits_project, small_digits, ledger, tmp_path):
    folder = digits_project(f"cc-live-{next(_n)}", folder=tmp_path / "project")
    config = folder / "labelloop.toml"
    # Training long enough that the round still runs while tune starts up (seconds).
    config.write_text(config.read_text().replace("min_steps = 40", "min_steps = 600"))
    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    project = open_project(find_config(folder), env=env)
    run_round(project)  # the cold start: 80 random picks pushed
    with open(small_digits / "labels.csv", newline="", encoding="utf-8") as handle:
        truth = {str((small_digits / row["path"]).resolve()): row["label"]
                 for row in csv.DictReader(handle)}
    answered = studio_session.simulate_annotators(project, truth, noise=0.0, seed=0)
    lock = project.config.workspace_dir / "lock"

    # The second round (sync the answers, train, predict, push) in its own process.
    round_proc = subprocess.Popen([LABELLOOP, "round", "--quiet", "--config", str(folder)],
                                  env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    steps: list[str] = []
    reader = threading.Thread(target=lambda: [steps.append(line) for line in round_proc.stderr],
                              daemon=True)
    reader.start()
    # Paused between exports: a busy loop would take the CPU the round needs.
    exports = ExportLoop(project.config.store_url, tmp_path / "live.csv", pause_s=0.05)
    exports.start()
    deadline = time.monotonic() + 300
    while not any(s.startswith("  sync:") for s in steps):  # the round is in its train step
        assert round_proc.poll() is None, "".join(steps)[-2000:]
        assert time.monotonic() < deadline, "the round did not get past its sync step"
        time.sleep(0.2)
    holder = read_holder(lock)
    assert holder is not None and holder.pid == round_proc.pid
    tune = labelloop("tune", "--trials", "1", "--config", str(folder), env=env)
    overlapped = round_proc.poll() is None
    reader.join(timeout=600)  # stderr closes when the round exits
    out = round_proc.stdout.read()
    round_proc.wait(timeout=60)
    exports.stop()

    labels = project.store.current_labels(sources=("human",))
    ledger.fault("tune while a round runs (real round process)",
                 outcome=f"refused, exit {tune.returncode}",
                 lost_labels=answered - len(labels), duplicate_tasks=duplicate_tasks(project))
    ledger.fault("export while a round runs (real round process)",
                 outcome=f"{len(exports.counts)} exports, {len(exports.errors)} failed",
                 lost_labels=answered - len(labels), duplicate_tasks=duplicate_tasks(project))
    assert overlapped, "the round ended before tune was refused; raise min_steps"
    assert tune.returncode == 3, tune.stderr[-2000:]
    line = tune.stderr.strip()
    assert "\n" not in line and f"pid {round_proc.pid}" in line and "`labelloop round`" in line
    assert round_proc.returncode == 0, "".join(steps)[-2000:]
    # One line per step, printed as it is (a "[tuning]" in a reason is not markup).
    assert any(s.startswith("  tune: ") and "[tuning] every_rounds" in s for s in steps)
    assert json.loads(out.strip().splitlines()[-1])["round"] == 2
    assert not (project.config.workspace_dir / "optuna.db").exists()
    assert exports.errors == []
    # The exports ran before and after the round's sync committed the answers, and each one
    # is a committed state.
    assert len(set(exports.counts)) >= 2
    assert set(exports.counts) <= committed_counts(project.store)
    with WorkspaceLock(lock, command="test"):  # released by the round's exit
        pass
    project.close()


class ExportLoop:
    """Export ``store_url`` to ``out`` (CSV, --force) over and over in a thread, each time
    with a freshly opened store as the CLI does; keeps the row count of each export and any
    error (no exception may escape: a failed export is a finding, recorded)."""

    def __init__(self, store_url: str, out: Path, *, pause_s: float = 0.0):
        self.store_url, self.out, self.pause_s = store_url, out, pause_s
        self.counts: list[int] = []
        self.signatures: list[frozenset] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            store = LabelStore(self.store_url)
            try:
                report = export_labels(store, self.out, format="csv", force=True)
                rows = read_export(self.out)
            except (OperationalError, StoreUnavailable, OSError, ValueError) as err:
                self.errors.append(f"{type(err).__name__}: {err}")
                continue
            finally:
                store.close()
            if report.rows != len(rows) or len({r["item_key"] for r in rows}) != len(rows):
                self.errors.append(f"export of {report.rows} rows reads back as {len(rows)}, "
                                   f"{len({r['item_key'] for r in rows})} distinct items")
            self.counts.append(len(rows))
            self.signatures.append(signature(rows))
            self._stop.wait(self.pause_s)


def read_export(path: Path) -> list[dict]:
    """The rows of an export CSV; raises ValueError if it is not a whole export."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        raise ValueError(f"{path} ends mid-line")
    rows = list(csv.DictReader(io.StringIO(text)))
    if any(None in r or any(v is None for v in r.values()) for r in rows):
        raise ValueError(f"{path} has a row with the wrong number of fields")
    return rows


def signature(rows: list[dict]) -> frozenset:
    """What a committed state of the writer below looks like: rows per model version."""
    return frozenset(Counter(r["model_version"] for r in rows).items())


def committed_counts(store: LabelStore) -> set[int]:
    """How many items were labeled after each commit: labels made (and superseded) in one
    transaction share its timestamp, so the states between transactions are these."""
    with store.transaction() as s:
        spans = s.execute(select(Label.created_at, Label.superseded_at)).all()
    times = sorted({t for span in spans for t in span if t is not None})
    return {0} | {sum(1 for made, gone in spans if made <= t and (gone is None or gone > t))
                  for t in times}


# As a round's accept step does: holds the workspace lock and writes machine labels, BATCH per
# transaction. First it labels every item, then it relabels BATCH of them per transaction (a
# new model version supersedes the old label). After each commit it prints the state it
# committed: model version -> number of items that carry it.
WRITER = textwrap.dedent("""
    import json, sys, time
    from collections import Counter
    from pathlib import Path
    from labeling.store import LabelStore, NewLabel
    from pipeline.project.lock import WorkspaceLock
    url, lock, stop, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    store = LabelStore(url)
    keys = sorted(i.key for i in store.items())
    current = {}
    with WorkspaceLock(lock, command="labelloop round"):
        print(json.dumps([time.time(), {}]), flush=True)
        deadline = time.monotonic() + 240
        for j in range(10**6):
            if (stop.exists() and j * batch >= len(keys)) or time.monotonic() > deadline:
                break
            start = (j * batch) % len(keys)
            chunk = keys[start:start + batch]
            store.add_labels([NewLabel(k, str(j % 10), "machine", model_version=f"v{j}",
                                       confidence=0.99, round_id=None) for k in chunk])
            current.update((k, f"v{j}") for k in chunk)
            print(json.dumps([time.time(), Counter(current.values())]), flush=True)
            time.sleep(0.01)
""")


def test_exports_while_labels_are_written_are_whole_committed_states(tmp_path, ledger,
                                                                     backend, request):
    """On SQLite and on PostgreSQL ([store] url on the session's throwaway server)."""
    n_items, batch = 1000, 200
    folder = tmp_path / "project"
    (folder / "images").mkdir(parents=True)
    store_section = ("" if backend == "sqlite" else
                     f'[store]\nurl = "{request.getfixturevalue("postgres_url")}"\n')
    (folder / "labelloop.toml").write_text(textwrap.dedent("""\
        workspace = "ws"
        [project]
        name = "exports"
        classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        images = "images"
        """) + store_section, encoding="utf-8")
    project = open_project(find_config(folder))
    project.store.add_items(tiny_pngs(folder / "images", n_items))
    workspace = project.config.workspace_dir
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, project.config.store_url, str(workspace / "lock"),
         str(stop), str(batch)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    first = writer.stdout.readline()
    assert first, writer.stderr.read()[-2000:]

    # While it writes: two CLI exports (a CSV and an image folder), exports in this process
    # to one CSV replaced each time, and a reader that reads that CSV whenever it can.
    env = cli_env()
    cli_start = time.time()
    cli = [subprocess.Popen([LABELLOOP, "export", "--format", fmt, "--out", str(tmp_path / out),
                             "--config", str(folder)], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for fmt, out in (("csv", "cli.csv"), ("imagefolder", "cli-folder"))]
    loop = ExportLoop(project.config.store_url, tmp_path / "forced.csv")
    loop.start()
    seen: list[frozenset] = []
    torn: list[str] = []
    while any(p.poll() is None for p in cli):
        if (tmp_path / "forced.csv").exists():
            try:
                seen.append(signature(read_export(tmp_path / "forced.csv")))
            except ValueError as err:
                torn.append(str(err))
        store = LabelStore(project.config.store_url)
        try:
            folder_report = export_labels(store, tmp_path / "forced-folder",
                                          format="imagefolder", classes=project.classes,
                                          force=True)
        finally:
            store.close()
        seen.append(signature(read_export(tmp_path / "forced-folder" / "provenance.csv")))
        assert_whole_folder(tmp_path / "forced-folder", folder_report.rows)
    cli_end = time.time()
    cli_results = [(p.returncode, *p.communicate()) for p in cli]
    loop.stop()
    stop.touch()
    lines = writer.stdout.read().splitlines()
    writer.wait(timeout=120)
    states = [json.loads(line) for line in [first, *lines]]
    committed = {frozenset(state.items()) for _, state in states}
    final = Counter(states[-1][1])

    exported = [signature(read_export(tmp_path / "cli.csv")),
                signature(read_export(tmp_path / "cli-folder" / "provenance.csv")),
                *loop.signatures, *seen]
    inconsistent = [s for s in exported if s not in committed]
    labeled = project.store.current_labels()
    ledger.fault(f"export while labels are written (a round's accept step, 200 per "
                 f"transaction; {backend})",
                 outcome=f"{len(exported)} exports, {len(inconsistent)} inconsistent, "
                         f"{len(loop.errors) + len(torn)} failed",
                 lost_labels=sum(final.values()) - len(labeled),
                 # This test pushes nothing to Label Studio, so it can duplicate no task.
                 duplicate_tasks=0)
    assert writer.returncode == 0, writer.stderr.read()[-2000:]
    for code, _out, err in cli_results:
        assert code == 0, err[-2000:]
        assert "locked" not in err
    assert loop.errors == [] and torn == []
    assert inconsistent == []
    # The exports really ran between commits: they saw several different states, and the
    # writer committed while the CLI exports ran.
    assert len(set(exported)) >= 3
    assert any(cli_start < t < cli_end for t, _ in states[1:])
    assert_whole_folder(tmp_path / "cli-folder", len(read_export(
        tmp_path / "cli-folder" / "provenance.csv")))
    # The certificate beside each CLI export counts what the file holds (it was read apart
    # from the rows, so a round writing meanwhile gave it other labels: a user's review).
    for export_file, cert_name in ((tmp_path / "cli.csv", "cli.certificate.json"),
                                   (tmp_path / "cli-folder" / "provenance.csv",
                                    "cli-folder.certificate.json")):
        cert = json.loads((tmp_path / cert_name).read_text(encoding="utf-8"))
        rows = read_export(export_file)
        assert cert["machine"] == sum(r["source"] == "machine" for r in rows)
        assert cert["exported_rows"] == len(rows) == cert["delivered"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert len(labeled) == n_items and Counter(v.model_version for v in labeled.values()) == final
    project.close()


def tiny_pngs(folder: Path, n: int) -> list[NewItem]:
    """``n`` distinct 4x4 PNGs in ``folder`` as store items (key = sha256 of the file)."""
    items = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        pixels = np.frombuffer(hashlib.sha256(str(i).encode()).digest()[:16], dtype=np.uint8)
        Image.fromarray(pixels.reshape(4, 4)).save(path)
        key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(NewItem(key, str(path), path.stat().st_size, 4, 4))
    return items


def assert_whole_folder(out: Path, rows: int) -> None:
    """An image-folder export holds exactly the files its provenance.csv lists (and the list
    of the files it wrote: those, and provenance.csv)."""
    files = [p for p in out.rglob("*")
             if p.is_file() and p.name not in ("provenance.csv", EXPORT_MANIFEST)]
    listed = read_export(out / "provenance.csv")
    assert len(files) == len(listed) == rows
    assert {str(p.relative_to(out)) for p in files} == {r["path"] for r in listed}
    written = (out / EXPORT_MANIFEST).read_text().splitlines()
    assert sorted(written) == sorted([*(r["path"] for r in listed), "provenance.csv"])


def test_read_commands_at_once_on_a_new_project_all_work(tmp_path):
    """MLflow creates and migrates a new registry's tables as a command first connects; three
    commands at once on a new project broke each other's migration (an alembic traceback, a
    "table already exists" error). Each must answer as it would alone."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    init = subprocess.run([LABELLOOP, "init", "--images", "images", "--classes", "cat,dog"],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    commands = [["status"], ["models", "list"], ["status"]]
    procs = [subprocess.Popen([LABELLOOP, *c], cwd=tmp_path, env=cli_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (command, err[-2000:])
        assert "Traceback" not in err and "error:" not in err, (command, err[-2000:])
