"""Faults injected into whole rounds against the real Label Studio and MLflow: SIGKILL at random
points inside steps, Label Studio failing during push and sync (through a fault proxy), and
people deleting or editing tasks in Label Studio between rounds."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

from labeling.studio.connection import connect
from labeling.studio.errors import StudioUnreachable
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.round import session as studio_session
from pipeline.round import sync as sync_step
from pipeline.round.steps import STEPS, run_round
from pipeline.status import project_status
from tests.integration.fault_proxy import Fault
from tests.integration.test_loop import REPO, answer, lost_human_labels, make_project, state

pytestmark = [pytest.mark.integration, pytest.mark.slow]
_n = itertools.count()

ROUND_RUNNER = textwrap.dedent("""
    import os, sys
    from pipeline.project.project import open_project
    from pipeline.round.steps import run_round
    from pipeline.project.workspace import find_config
    run_round(open_project(find_config(sys.argv[1]),
                           env={"LABEL_STUDIO_API_KEY": os.environ["LS_KEY"]}))
""")
LONG_STEPS = ("sync", "train", "promote", "predict", "push")
LAST_STEPS = ("monitor", "tune")


def tasks_per_item(studio, project_id) -> Counter:
    return Counter(item_key_of(t) for t in iter_tasks(studio, project_id, include="id,data"))


def step_running(store) -> str | None:
    """The step a running round is in (the first not done), or None between rounds."""
    running = store.running_round()
    if running is None:
        return None
    done = (running["stats"] or {}).get("done", [])
    return next((s for s in STEPS if s not in done), None)


def kill_inside(store, step: str, within: float, command: list[str], env: dict, rng) -> str:
    """Run a round in a child process and SIGKILL it at a random moment after it entered
    ``step`` (uniform over ``within`` seconds); returns the step it was in when killed."""
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        while child.poll() is None and step_running(store) != step:
            time.sleep(0.02)
        # The moment is drawn over the step's time in the uninterrupted run; on a loaded
        # machine this run can be quicker than that one and finish the round first (CI once
        # saw every kill of a run miss so), so the kill comes sooner if the round reaches its
        # last steps.
        kill_at = time.monotonic() + float(rng.uniform(0.0, within))
        while (child.poll() is None and time.monotonic() < kill_at
               and step_running(store) not in LAST_STEPS):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
    if child.returncode != -signal.SIGKILL:
        assert child.returncode == 0, err[-2000:]
        return "nothing (the round finished first)"
    return step_running(store) or "nothing (between rounds)"


def test_sigkill_at_random_points_inside_steps_reaches_the_uninterrupted_state(
        studio_server, digits_export, tmp_path, ledger):
    """Each round is killed at random moments inside randomly chosen long steps (the moment
    drawn over the time that step took in an uninterrupted run), and run again; the result
    equals the uninterrupted run."""
    rounds = 2
    ref, truth, env = make_project(studio_server, digits_export, tmp_path / "ref",
                                   f"rref-{next(_n)}")
    took = []  # per round: step -> seconds it took
    for n in range(rounds):
        ends = {}
        t0 = time.monotonic()
        run_round(ref, on_step=lambda step, _r, ends=ends: ends.__setitem__(step, time.monotonic()))
        starts = [t0] + [ends[s] for s in STEPS[:-1]]
        took.append({s: ends[s] - a for s, a in zip(STEPS, starts, strict=True)})
        answer(ref, truth, seed=n)
    expected = state(ref)
    ref.close()

    crash, truth, _ = make_project(studio_server, digits_export, tmp_path / "crash",
                                   f"rcrash-{next(_n)}")
    command = [sys.executable, "-c", ROUND_RUNNER, str(tmp_path / "crash")]
    child_env = {**os.environ, "LS_KEY": env["LABEL_STUDIO_API_KEY"]}
    rng = np.random.default_rng(7)
    killed_in: list[str] = []
    for n in range(rounds):
        # Steps that took a moment in the uninterrupted run (the first round trains nothing).
        slow = [s for s in LONG_STEPS if took[n][s] >= 0.3] or ["push"]
        targets = sorted((str(s) for s in rng.choice(slow, size=min(3, len(slow)),
                                                     replace=False)), key=STEPS.index)
        for k, step in enumerate(targets):
            if k and crash.store.running_round() is None:
                break  # a child finished the round: another would start the next one
            killed_in.append(kill_inside(crash.store, step, took[n][step], command,
                                         child_env, rng))
        if crash.store.running_round() is not None:
            run_round(crash)  # resumes and finishes it
        answer(crash, truth, seed=n)
    got = state(crash)
    crash.close()
    lost = lost_human_labels(expected, got)
    duplicates = 0 if got["tasks_per_item"] == {1} else 1
    killed_in = [s for s in killed_in if s in STEPS]
    for step in killed_in:
        ledger.fault(f"SIGKILL at a random point inside step {step}",
                     outcome="next run resumed to the uninterrupted state",
                     lost_labels=lost, duplicate_tasks=duplicates)
    # At least one kill landed inside a step in each round (on a loaded machine a child can
    # finish its round before a later kill of the same round lands).
    assert len(killed_in) >= rounds, killed_in
    assert lost == 0 and duplicates == 0
    assert got["rounds"] == expected["rounds"] == ["done"] * rounds
    for key in ("labels", "picks", "versions", "champion"):
        assert got[key] == expected[key], key


def test_label_studio_faults_and_task_edits_between_rounds_lose_nothing(
        studio_server, digits_export, tmp_path, proxy, ledger):
    project, truth, env = make_project(studio_server, digits_export, tmp_path,
                                       f"lsfault-{next(_n)}", url=proxy.url, timeout_s=5.0)
    direct = connect(studio_server.url, studio_server.token)
    run_round(project)
    _, sp = studio_session.session(project)
    first = project.store.tasks(sp.id)
    keys = sorted(first)
    # People at work in Label Studio between rounds: two tasks deleted before anyone answered;
    # everything answered and synced (`labelloop studio sync`); then one answered task deleted
    # and one task's image swapped.
    never_answered, gone_answered, edited, other = keys[:2], keys[2], keys[3], keys[4]
    with direct.errors("deleting and editing tasks"):
        for key in never_answered:
            direct.client.tasks.delete(id=first[key])
    answered = answer(project, truth, seed=0)
    between = sync_step.sync(project)
    assert between["deleted_tasks"] == 2 and between["labels"] == answered
    with direct.errors("deleting and editing tasks"):
        direct.client.tasks.delete(id=first[gone_answered])
        direct.client.tasks.update(id=first[edited], data={
            "image": sp.images.url_for(project.store.item(other).path), "item_key": edited})

    # Round 2 from the CLI; Label Studio answers the import with HTTP 503.
    imports_before = proxy.count("POST", "/import")
    fault = proxy.inject(Fault("POST", "/import", "status", status=503, times=1))
    proc = subprocess.run([str(REPO / ".venv/bin/labelloop"), "round", "--config", str(tmp_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    assert proc.returncode not in (0, -signal.SIGKILL), proc.stderr[-2000:]
    assert "HTTP 503" in proc.stderr and "Traceback" not in proc.stderr
    assert env["LABEL_STUDIO_API_KEY"] not in proc.stdout + proc.stderr
    assert fault.hits == 1 and proxy.count("POST", "/import") == imports_before + 1

    record = run_round(project)  # resumes at the push and finishes the round
    sync = record["stats"]["sync"]
    assert sync["deleted_tasks"] == 1 and sync["rejected"] == 1 and sync["retracted"] == 1
    human = project.store.current_labels(sources=("human",))
    assert gone_answered in human and edited not in human
    now = project.store.tasks(sp.id)
    for key in never_answered:  # unlabeled: sent again, as new tasks
        assert key not in human and key in now and now[key] != first[key]
    on_server = tasks_per_item(direct, sp.id)
    duplicates = sum(n - 1 for n in on_server.values())
    lost = sum(1 for k in first if k not in human and k not in (*never_answered, edited))
    ledger.fault("import answered HTTP 503 in a CLI round", outcome="round stopped with a "
                 "message; next run resumed at the push", lost_labels=lost,
                 duplicate_tasks=duplicates)
    ledger.fault("tasks deleted in Label Studio between rounds (2 unanswered, 1 answered)",
                 outcome="unlabeled items sent again; the synced label kept",
                 lost_labels=lost, duplicate_tasks=duplicates)
    ledger.fault("task image swapped in Label Studio between rounds",
                 outcome="its answer rejected with the reason", lost_labels=lost,
                 duplicate_tasks=duplicates)
    assert answered == len(first) - 2 and lost == 0 and duplicates == 0
    assert set(on_server) == set(now)
    status = project_status(project)  # what `labelloop status` shows
    assert status["pool"]["rejected_answers"] == 1
    assert any(f"task {first[edited]}: the task's image was changed" in w
               for w in status["warnings"])

    # Round 3: every task listing is slower than the client's timeout, then the server recovers.
    answer(project, truth, seed=1)
    proxy.inject(Fault("GET", "/api/tasks", "slow", delay=7.0))
    with pytest.raises(StudioUnreachable, match="did not answer in time"):
        run_round(project)
    proxy.clear()
    run_round(project)
    after = project.store.current_labels(sources=("human",))
    on_server = tasks_per_item(direct, sp.id)
    lost = sum(1 for k in human if k not in after)
    duplicates = sum(n - 1 for n in on_server.values())
    ledger.fault("Label Studio slower than the timeout during a round's sync",
                 outcome="round stopped with a message; next run completed",
                 lost_labels=lost, duplicate_tasks=duplicates)
    assert lost == 0 and duplicates == 0 and len(after) > len(human)
    project.close()


def _run_loop_cli(tmp_path, env, *args: str) -> tuple[subprocess.CompletedProcess, list, list]:
    proc = subprocess.run([str(REPO / ".venv/bin/labelloop"), "run", "--every", "1s", *args,
                           "--config", str(tmp_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return (proc, [x for x in lines if "round_failed" in x],
            [x["round"] for x in lines if "round" in x])


def test_the_scheduled_loop_retries_rounds_through_outages_and_stops_on_a_refused_key(
        studio_server, digits_export, tmp_path, proxy, ledger):
    project, _, env = make_project(studio_server, digits_export, tmp_path,
                                   f"sched-{next(_n)}", url=proxy.url, timeout_s=5.0)
    # Two failed imports: the loop reports each, waits the interval, resumes the round.
    fault = proxy.inject(Fault("POST", "/import", "status", status=503, times=2))
    proc, failed, rounds = _run_loop_cli(tmp_path, env, "--max-rounds", "2")
    _, sp = studio_session.session(project)
    direct = connect(studio_server.url, studio_server.token)
    on_server = tasks_per_item(direct, sp.id)
    duplicates = sum(n - 1 for n in on_server.values())
    ledger.fault("import answered HTTP 503 twice to the scheduled loop",
                 outcome="each reported and retried after the interval; rounds completed",
                 lost_labels=0, duplicate_tasks=duplicates)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert fault.hits == 2 and [f["failures_in_a_row"] for f in failed] == [1, 2]
    assert "HTTP 503" in failed[0]["round_failed"] and rounds == [1, 2]
    assert duplicates == 0 and set(on_server) == set(project.store.tasks(sp.id))

    # Label Studio keeps failing: the loop gives up after --max-failures tries in a row.
    proxy.clear()
    proxy.inject(Fault("GET", "/api/tasks", "status", status=502))
    proc, failed, rounds = _run_loop_cli(tmp_path, env, "--max-failures", "2")
    assert proc.returncode == 2 and len(failed) == 1 and rounds == []
    assert "HTTP 502" in proc.stderr and "Traceback" not in proc.stderr
    ledger.fault("Label Studio answering HTTP 502 to every read of the scheduled loop",
                 outcome="stopped after 2 tries in a row, exit 2", lost_labels=0,
                 duplicate_tasks=0)

    # A refused key will not fix itself: no retry, no wait.
    proxy.clear()
    proxy.inject(Fault("GET", "/api/tasks", "status", status=401))
    listings = proxy.count("GET", "/api/tasks")
    proc, failed, rounds = _run_loop_cli(tmp_path, env)
    ledger.fault("API key refused (HTTP 401) during the scheduled loop",
                 outcome="stopped at once, exit 2", lost_labels=0, duplicate_tasks=0)
    assert proc.returncode == 2 and failed == [] and rounds == []
    assert "refused the API key" in proc.stderr
    assert proxy.count("GET", "/api/tasks") == listings + 1
    proxy.clear()
    assert run_round(project)["stats"]["push"]["already_there"] >= 0  # it resumes and finishes
    assert project.store.running_round() is None
    project.close()
