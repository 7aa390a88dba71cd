"""The loop end to end against the real Label Studio: rounds on digits answered by the
simulated annotator, crash-resume at every step boundary, and the workspace lock."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from labeling.selections import picks
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.datasets import read_labels_csv
from pipeline.ingest import ingest_folder
from pipeline.project.lock import WorkspaceLock
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round import session as studio_session
from pipeline.round.steps import STEPS, run_round

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
_n = itertools.count()


def make_project(studio_server, digits_export, tmp_path, name, *, url=None, timeout_s=120.0,
                 databases: str = "", images: Path | None = None):
    """A labelloop project on digits, talking to the session's server as an external one
    (at ``url`` if given: a proxy in front of it); ``databases``: config sections for its
    stores (default: SQLite files in the workspace); ``images``: another image folder (in the
    server's document root) instead of the digits."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "labelloop.toml").write_text(textwrap.dedent(f"""
        workspace = "ws"
        [project]
        name = "{name}"
        classes = {[str(d) for d in range(10)]!r}
        images = "{images or digits_export / 'images'}"
        [studio]
        url = "{url or studio_server.url}"
        timeout_s = {timeout_s}
        local_files_root = "{studio_server.images_dir.parent}"
        [training]
        epochs = 15
        [loop]
        batch_size = 60
        initial_random = 80
        min_new_labels = 20
    """).replace("'", '"') + databases, encoding="utf-8")
    env = {"LABEL_STUDIO_API_KEY": studio_server.token}
    project = open_project(find_config(tmp_path), env=env)
    ingest_folder(project.store, project.config.images_dir)
    truth = {str(p.resolve()): label
             for p, label in read_labels_csv(digits_export / "labels.csv")}
    return project, truth, env


def answer(project, truth, seed):
    return studio_session.simulate_annotators(project, truth, noise=0.0, seed=seed)


def state(project) -> dict:
    """What a user would compare between two runs."""
    studio, sp = studio_session.session(project)
    keys = Counter(item_key_of(t) for t in iter_tasks(studio, sp.id, include="id,data",
                                                       all_fields=True))
    labels = project.store.current_labels()
    return {
        "tasks_per_item": set(keys.values()),
        "task_items": set(keys),
        "labels": {k: (v.label, v.source) for k, v in labels.items()},
        "picks": {k: (p.reason, p.holdout) for k, p in picks(project.store).items()},
        "versions": len(project.registry.versions()),
        "champion": project.registry.champion().version,
        "rounds": [r["status"] for r in project.store.rounds()],
    }


def lost_human_labels(expected: dict, got: dict) -> int:
    """Items a person labeled in ``expected`` (a ``state``) that lack a person's label in
    ``got``."""
    return sum(1 for k, (_, source) in expected["labels"].items()
               if source == "human" and got["labels"].get(k, (None, None))[1] != "human")


def test_rounds_with_the_simulated_annotator(studio_server, digits_export, tmp_path):
    project, truth, _ = make_project(studio_server, digits_export, tmp_path, f"e2e-{next(_n)}")
    accuracies = []
    for n in range(4):
        record = run_round(project)
        assert record["stats"]["push"]["pushed"] > 0
        answer(project, truth, seed=n)
        promote = record["stats"]["promote"]
        if "challenger_score" in promote:
            accuracies.append(promote["challenger_score"]["accuracy"])
    final = run_round(project)  # syncs the last answers
    s = state(project)
    assert s["tasks_per_item"] == {1}, "an item got two tasks"
    assert accuracies and accuracies[-1] > 0.9 and accuracies[-1] >= accuracies[0]
    assert final["stats"]["sync"]["labels"] > 0
    # People's labels stand: no item a person labeled carries a machine label now.
    for key, (_label, source) in s["labels"].items():
        if any(h.source == "human" for h in project.store.history(key)):
            assert source == "human"
    # Pre-annotations carry the registry version as model_version.
    assert final["stats"]["push"]["model_version"] == f"v{s['champion']}"
    project.close()


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pipeline.project.project import open_project
    from pipeline.round.steps import run_round
    from pipeline.project.workspace import find_config
    stop_after = sys.argv[2]
    def die(step, _result):
        if step == stop_after:
            os.kill(os.getpid(), signal.SIGKILL)
    project = open_project(find_config(sys.argv[1]),
                           env={"LABEL_STUDIO_API_KEY": os.environ["LS_KEY"]})
    run_round(project, on_step=die)
""")


def test_kill_at_every_step_boundary_reaches_the_uninterrupted_state(
        studio_server, digits_export, tmp_path, ledger, backend, request):
    """Each round is SIGKILLed after one step (a different step each time) and re-run; the
    result equals a run that was never interrupted. On SQLite files, and with the label store,
    MLflow and Optuna on PostgreSQL."""
    rounds = 3

    def databases() -> str:
        if backend == "sqlite":
            return ""
        return request.getfixturevalue("postgres_server").config_sections()

    ref, truth, _ = make_project(studio_server, digits_export, tmp_path / "ref",
                                 f"ref-{next(_n)}", databases=databases())
    for n in range(rounds):
        run_round(ref)
        answer(ref, truth, seed=n)
    expected = state(ref)
    ref.close()

    crash, truth, env = make_project(studio_server, digits_export, tmp_path / "crash",
                                     f"crash-{next(_n)}", databases=databases())
    config = str(tmp_path / "crash")
    # Every step boundary once: after each step of STEPS, spread over the rounds in order.
    per_round = -(-len(STEPS) // rounds)
    schedule = [STEPS[i:i + per_round] for i in range(0, len(STEPS), per_round)]
    child_env = {**os.environ, "LS_KEY": env["LABEL_STUDIO_API_KEY"]}
    kills: list[str] = []
    for n in range(rounds):
        for step in schedule[n]:
            proc = subprocess.run([sys.executable, "-c", KILLER, config, step], cwd=REPO,
                                  env=child_env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
            kills.append(step)
        run_round(crash)  # resumes the interrupted round and finishes it
        answer(crash, truth, seed=n)
    assert kills == list(STEPS)
    got = state(crash)
    crash.close()
    lost = lost_human_labels(expected, got)
    for step in kills:
        ledger.fault(f"SIGKILL right after step {step} ({backend})",
                     outcome="next run resumed to the uninterrupted state", lost_labels=lost,
                     duplicate_tasks=0 if got["tasks_per_item"] == {1} else 1)
    assert got["tasks_per_item"] == {1}
    assert got["rounds"] == expected["rounds"] == ["done"] * rounds
    for key in ("labels", "picks", "versions", "champion"):
        assert got[key] == expected[key], key
    assert len(got["task_items"]) == len(expected["task_items"])


def test_a_second_round_on_a_locked_workspace_refuses(studio_server, digits_export, tmp_path):
    project, _, env = make_project(studio_server, digits_export, tmp_path, f"lock-{next(_n)}")
    lock_path = project.config.workspace_dir / "lock"
    with WorkspaceLock(lock_path, command="labelloop run --every 10m"):
        proc = subprocess.run(
            [str(REPO / ".venv/bin/labelloop"), "round", "--config", str(tmp_path)],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    assert f"pid {os.getpid()}" in proc.stderr and "labelloop run" in proc.stderr
    assert project.store.rounds() == []
    project.close()


def test_scheduled_loop_stops_gracefully_on_sigterm(studio_server, digits_export, tmp_path):
    project, _, env = make_project(studio_server, digits_export, tmp_path, f"run-{next(_n)}")
    project.close()
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/labelloop"), "run", "--every", "1s", "--max-rounds", "50",
         "--config", str(tmp_path)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # one JSON line per finished round
    assert '"round": 1' in first, proc.stderr.read()[-2000:] if proc.poll() is not None else first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM" in err
    assert "SIGTERM: stopping after the current step" in err  # said at once, not at the end
    reopened = open_project(find_config(tmp_path), env=env)
    rounds = reopened.store.rounds()
    # Stopped between steps: every round is done, or left running to be resumed next time.
    assert rounds and rounds[0]["status"] == "done"
    assert all(r["status"] in ("done", "running") for r in rounds)
    reopened.close()
