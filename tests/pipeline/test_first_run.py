"""The first ten minutes: each wrong step is caught at the step that caused it, in one line
that names the next command, as a user running the commands meets it."""

from __future__ import annotations

import json
import re
import shutil
import signal
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from labeling.seen_files import forget_seen, replaced_items, unusable_items
from labeling.store import NewLabel
from pipeline.cli.app import app
from pipeline.loop import StopFlag, run_loop
from pipeline.project.lock import WorkspaceLock
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round.ingest import ingest_new
from pipeline.round.labeled import items_to_predict, labeled_sets
from pipeline.round.monitor import new_images
from pipeline.round.select import unasked
from pipeline.status import project_status

runner = CliRunner()


def _jpegs(folder, n: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):  # RGB photos of different sizes, as users have
        size = (40 + 13 * i, 30 + 7 * i)
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(
            folder / f"photo{i}.jpg", quality=90)


def _init(tmp_path, *extra: str):
    _jpegs(tmp_path / "imgs")
    return runner.invoke(app, ["init", "--images", str(tmp_path / "imgs"), "--classes",
                               "cat,dog", "--folder", str(tmp_path), *extra])


@contextmanager
def _ingested(tmp_path, name: str):
    """A project made by `init` whose four photos a first round's ingest read; closed after."""
    assert _init(tmp_path, "--name", name).exit_code == 0
    project = open_project(find_config(tmp_path / "labelloop.toml"))
    try:
        assert ingest_new(project, progress=False)["added"] == 4
        yield project
    finally:
        project.close()


def test_init_refuses_a_name_label_studio_would_refuse_and_writes_nothing(tmp_path, ledger):
    done = _init(tmp_path, "--name", "tm")
    assert done.exit_code == 2
    assert "Label Studio project titles have 3 to 50" in done.output
    assert "--name" in done.output
    assert not (tmp_path / "labelloop.toml").exists()
    ledger.bad_input("init --name tm", outcome="refused: title too short")
    assert _init(tmp_path, "--name", "x" * 51).exit_code == 2
    assert _init(tmp_path, "--name", "tiny-cats").exit_code == 0


def test_init_refuses_a_name_the_model_registry_would_refuse(tmp_path, ledger):
    # init wrote it, ingest ran, and status and models failed on every run after: the project
    # name is MLflow's model name, which may hold neither '/' nor ':'.
    for name in ("cats/dogs", "pets: v2"):
        done = _init(tmp_path, "--name", name)
        assert done.exit_code == 2, name
        assert "the model registry refuses" in done.output and "--name" in done.output
        assert not (tmp_path / "labelloop.toml").exists()
    ledger.bad_input("init --name cats/dogs", outcome="refused: the registry's model name")
    assert _init(tmp_path, "--name", "cats and dogs").exit_code == 0
    config = tmp_path / "labelloop.toml"
    config.write_text(config.read_text().replace('name = "cats and dogs"', 'name = "a:b"', 1))
    done = runner.invoke(app, ["status", "--config", str(tmp_path)])
    assert done.exit_code == 2 and "holds :" in done.output


def test_names_and_reasons_with_brackets_are_shown_as_written(tmp_path):
    # rich read them as markup: a name "pets [v2]" lost "[v2]" in status's title, and a
    # promotion reason "[/] oops" made every later `models list` fail.
    with _ingested(tmp_path, "pets [v2]") as project:
        checkpoint = tmp_path / "fake.pt"
        checkpoint.write_bytes(b"weights")
        for snapshot in ("a", "b"):
            project.registry.register(checkpoint, params={}, metrics={"n_train": 4},
                                      snapshot=snapshot)
        project.registry.promote("1", reason="first")
        project.registry.promote("2", reason="[/] oops [bold]")
    listed = runner.invoke(app, ["models", "list", "--config", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "[/] oops [bold]" in listed.output
    status = runner.invoke(app, ["status", "--config", str(tmp_path)])
    assert status.exit_code == 0 and "project pets [v2]" in status.output


def test_labels_of_a_class_taken_out_of_the_config_are_named_in_status(tmp_path):
    # They were exported as they were, and status said nothing (a review of the CLI).
    with _ingested(tmp_path, "pets6") as project:
        keys = sorted(i.key for i in project.store.items())[:3]
        project.store.add_labels([NewLabel(keys[0], "cat", "human", who="me"),
                                  NewLabel(keys[1], "dog", "human", who="me"),
                                  NewLabel(keys[2], "dog", "human", who="me")],
                                 classes=project.classes)
        assert not any("no longer names" in w for w in project_status(project)["warnings"])
    config = tmp_path / "labelloop.toml"
    config.write_text(config.read_text().replace('classes = ["cat", "dog"]',
                                                 'classes = ["cat", "bird"]', 1))
    project = open_project(find_config(config))
    try:
        [warning] = [w for w in project_status(project)["warnings"] if "no longer names" in w]
        assert warning.startswith("2 label(s) carry a class [project] classes no longer "
                                  "names: dog (2)")
    finally:
        project.close()


def test_commands_that_read_refuse_a_deleted_workspace_and_do_not_make_an_empty_one(tmp_path):
    # status answered "0 items" from a new workspace made on the spot: a deleted or moved
    # folder looked like a project with nothing labeled.
    with _ingested(tmp_path, "gone-ws"):
        pass
    shutil.rmtree(tmp_path / ".labelloop")
    for command in (["status"], ["models", "list"], ["report", "--out", str(tmp_path / "r.html")]):
        done = runner.invoke(app, [*command, "--config", str(tmp_path)])
        assert done.exit_code == 2, command
        assert "no workspace at" in done.output and "labelloop ingest" in done.output
        assert not (tmp_path / ".labelloop").exists(), command
    assert runner.invoke(app, ["ingest", "--config", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["status", "--config", str(tmp_path)]).exit_code == 0


@pytest.mark.parametrize("command", [["round"], ["run", "--every", "1s"]])
def test_a_damaged_checkpoint_or_a_second_ctrl_c_ends_round_and_run_in_one_line(
        tmp_path, monkeypatch, command):
    # `labelloop run` ended in a 68-line traceback where `labelloop round` said one line.
    import pipeline.cli.rounds as rounds_cli
    import pipeline.round.steps
    from training.checkpoint import CheckpointError

    assert _init(tmp_path).exit_code == 0
    raised = [CheckpointError("cannot read checkpoint /x/v5.pt (corrupt or not a checkpoint)"),
              KeyboardInterrupt()]

    def fails(*args, **kwargs):
        raise raised[0]

    monkeypatch.setattr(pipeline.round.steps, "run_round", fails)
    monkeypatch.setattr(rounds_cli, "run_loop", fails)
    done = runner.invoke(app, [*command, "--config", str(tmp_path)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "cannot read checkpoint /x/v5.pt" in done.output
    assert "`labelloop models rollback`" in done.output
    raised.pop(0)
    done = runner.invoke(app, [*command, "--config", str(tmp_path)])
    assert done.exit_code == 130 and "stopped at once, inside a step" in done.output


def test_run_refuses_an_interval_of_zero_and_its_lines_say_when(tmp_path, monkeypatch):
    import pipeline.cli.rounds as rounds_cli

    assert _init(tmp_path).exit_code == 0
    zero = runner.invoke(app, ["run", "--every", "0", "--config", str(tmp_path)])
    assert zero.exit_code == 2 and "it must be longer than 0" in zero.output

    def one_round(project, **kwargs):  # the loop's callbacks, as a real round calls them
        kwargs["on_empty"](RuntimeError("the pool is empty"))
        kwargs["after_round"]({"id": 7, "stats": {}})
        return 1

    monkeypatch.setattr(rounds_cli, "run_loop", one_round)
    done = runner.invoke(app, ["run", "--every", "1s", "--config", str(tmp_path)])
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and all("time" in x for x in lines)  # an unattended log, read later
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", x["time"])
               for x in lines)


def test_a_second_stop_signal_stops_inside_the_step(capsys):
    stop = StopFlag()
    stop._handle(signal.SIGINT, None)
    assert stop() and "SIGINT: stopping after the current step" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_a_stop_signal_reaching_a_forked_worker_is_left_to_the_main_process(capfd):
    # One Ctrl-C printed "SIGINT: stopping after the current step" once per DataLoader
    # worker, which inherit the handler when they fork.
    import os

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopFlag()
    stop.install()
    try:
        child = os.fork()
        if child == 0:  # the worker: the handler runs there too, and must do nothing
            stop._handle(signal.SIGINT, None)
            os._exit(1 if stop() else 0)
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
        assert "SIGINT" not in capfd.readouterr().err
        stop._handle(signal.SIGINT, None)
        assert stop() and "SIGINT: stopping after the current step" in capfd.readouterr().err
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_round_on_an_empty_folder_says_why_and_the_loop_waits_for_images(tmp_path, ledger):
    (tmp_path / "imgs").mkdir()
    done = runner.invoke(app, ["init", "--images", str(tmp_path / "imgs"), "--classes",
                               "cat,dog", "--name", "empty-pool", "--folder", str(tmp_path)])
    assert done.exit_code == 0
    config = str(tmp_path / "labelloop.toml")
    done = runner.invoke(app, ["round", "--config", config])
    assert done.exit_code == 2, done.output
    assert re.search(r"the pool is empty: no image files under .*imgs.*put images in "
                     r"\[project\] images", done.output.replace("\n", ""))
    ledger.bad_input("labelloop round on an empty image folder",
                     outcome="refused: the pool is empty, put images in the folder")
    project = open_project(find_config(tmp_path / "labelloop.toml"))
    try:
        assert project.store.rounds() == []
        # The scheduled loop neither fails nor counts a round: it says why and waits.
        stop, said = StopFlag(), []

        def empty(err):
            said.append(str(err))
            _jpegs(tmp_path / "imgs")  # images arrive while it waits
            stop._event.set()

        assert run_loop(project, every_s=0.01, max_rounds=1, stop=stop, on_empty=empty) == 0
        assert len(said) == 1 and "the pool is empty" in said[0]
        assert project.store.rounds() == []
        # The next round's first move ingests them.
        assert ingest_new(project, progress=False)["added"] == 4
        assert project.store.count_items() == 4
    finally:
        project.close()


def test_a_round_with_the_embedded_server_stopped_names_studio_start(tmp_path, ledger):
    assert _init(tmp_path, "--name", "no-server").exit_code == 0
    config = str(tmp_path / "labelloop.toml")
    ingested = runner.invoke(app, ["ingest", "--config", config])
    assert ingested.exit_code == 0
    assert "next: `labelloop studio start` (the embedded Label Studio), then `labelloop round`" \
        in ingested.output
    done = runner.invoke(app, ["round", "--config", config])
    assert done.exit_code == 2
    assert "the embedded Label Studio" in done.output and "is not running" in done.output
    assert "`labelloop studio start`" in done.output
    assert "API key" not in done.output
    ledger.bad_input("labelloop round with the embedded server stopped",
                     outcome="refused: start it with `labelloop studio start`")
    # The scheduled loop stops at once too: waiting does not start a server.
    loop = runner.invoke(app, ["run", "--every", "1s", "--config", config])
    assert loop.exit_code == 2
    assert "`labelloop studio start`" in loop.output
    assert "retry" not in loop.output.lower()


@pytest.mark.parametrize("command, shown", [
    (["serve"], "[studio] backend_port"), (["studio", "connect"], "<[studio] backend_port>"),
    (["studio", "new-project"], "[studio] project_title"), (["quickstart"], "[studio]")])
def test_help_keeps_the_config_sections_it_names(command, shown):
    # Rich read "[studio]" as markup and printed " backend_port".
    done = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and shown in done.output


def test_help_lists_the_commands_in_the_order_a_user_meets_them():
    done = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert done.exit_code == 0
    names = re.findall(r"^│ ([a-z][a-z-]*) ", done.output, flags=re.M)
    assert names[:10] == ["init", "ingest", "studio", "round", "run", "serve", "status",
                          "export", "report", "tune"]
    assert names.index("models") < names.index("quickstart")
    for panel in ("Set up", "Label", "Look at the results", "Models", "Try it out"):
        assert panel in done.output


def test_status_reads_the_champion_without_opening_mlflow(tmp_path, monkeypatch):
    assert _init(tmp_path, "--name", "fast-status").exit_code == 0
    project = open_project(find_config(tmp_path / "labelloop.toml"))
    try:
        assert project_status(project)["champion"] is None  # read once from MLflow ...
        assert project.registry.pointer_path.exists()  # ... and remembered

        def no_mlflow(*_args, **_kwargs):
            raise AssertionError("status opened MLflow")

        monkeypatch.setattr(type(project.registry), "champion", no_mlflow)
        status = project_status(project)
        assert status["champion"] is None and status["pool"]["items"] == 0
    finally:
        project.close()


@pytest.mark.parametrize("bad", ["{not json", ""])
def test_a_damaged_champion_pointer_is_read_from_the_registry_again(tmp_path, bad):
    assert _init(tmp_path, "--name", "bad-pointer").exit_code == 0
    project = open_project(find_config(tmp_path / "labelloop.toml"))
    try:
        project.registry.pointer_path.write_text(bad)
        assert project_status(project)["champion"] is None
        assert project.registry.cached_champion() == {"version": None, "metrics": {}}
    finally:
        project.close()


def test_status_says_a_round_whose_process_ended_is_stopped_not_running(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    from pipeline.project.lock import WorkspaceLock

    assert _init(tmp_path, "--name", "stopped-round").exit_code == 0
    project = open_project(find_config(tmp_path / "labelloop.toml"))
    lock = project.config.workspace_dir / "lock"
    try:
        rid = project.store.start_round()
        project.store.save_round(rid, {"done": ["ingest", "sync"]})
        with WorkspaceLock(lock, command="labelloop round"):  # a round at work: running
            status = project_status(project)
            assert status["rounds"][-1]["status"] == "running"
            assert not any("stopped" in w for w in status["warnings"])
        # Released (a round that stopped on an error) or its holder killed (the record
        # stays): stopped, and where it resumes.
        status = project_status(project)
        assert status["rounds"][-1]["status"] == "stopped"
        assert f"round {rid} stopped after 2 step(s)" in " ".join(status["warnings"])
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                    "command": "labelloop round", "started_at": "then"}))
        assert project_status(project)["rounds"][-1]["status"] == "stopped"
        lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "command": "labelloop round", "started_at": "now"}))
        assert project_status(project)["rounds"][-1]["status"] == "running"
        # The scheduled loop holds the lock and waits to try a failed round again: it read
        # as running for as long as it waited (up to --every x --max-failures).
        from labeling.studio.errors import StudioError
        from pipeline.loop import note_failure

        note_failure(project, StudioError("Label Studio did not answer in time"), 1, 600)
        status = project_status(project)
        assert status["rounds"][-1]["status"] == "failed, waiting to retry"
        assert any(f"round {rid} failed (1 in a row) and `labelloop run` tries it again at" in w
                   and "did not answer in time" in w for w in status["warnings"])
        note_failure(project, None, 0, 600)  # the retry went through
        assert project_status(project)["rounds"][-1]["status"] == "running"
        # A note left by a loop that is gone, while a manual round holds the lock and runs
        # the round: running, not waiting for a retry nobody will make.
        note_failure(project, StudioError("Label Studio did not answer in time"), 1, 600)
        note_file = project.config.workspace_dir / "loop-failure.json"
        note_file.write_text(json.dumps({**json.loads(note_file.read_text()),
                                         "pid": int(dead.stdout)}))
        status = project_status(project)
        assert status["rounds"][-1]["status"] == "running"
        assert not any("tries it again" in w for w in status["warnings"])
    finally:
        project.close()


def test_a_script_on_a_moved_workspace_is_refused_and_no_empty_one_is_made(tmp_path):
    # `with Loop(...)` made a new, empty workspace where the CLI refuses: a script's status
    # read "nothing labeled" and its export wrote an empty file with a certificate.
    from pipeline.api import Loop
    from pipeline.project.config import ConfigError

    with _ingested(tmp_path, "moved-workspace") as project:
        workspace = project.config.workspace_dir
    shutil.move(workspace, tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=f"no workspace at {workspace}"), Loop(tmp_path):
        pass
    assert not workspace.exists()
    shutil.move(tmp_path / "elsewhere", workspace)
    with Loop(tmp_path) as loop:
        assert loop.status()["pool"]["items"] == 4


def test_a_stop_asked_before_a_round_started_leaves_no_empty_round(tmp_path):
    # A Ctrl-C during the ingest left a round "stopped after 0 step(s)" that status warned of.
    from pipeline.round.steps import RoundStopped, run_round

    with _ingested(tmp_path, "early-stop") as project:
        with pytest.raises(RoundStopped, match="before a round started: nothing to resume"):
            run_round(project, should_stop=lambda: True)
        assert project.store.rounds() == []


def test_the_loop_retries_a_round_an_image_broke_and_its_log_says_when_it_gives_up(
        tmp_path, monkeypatch):
    # A file overwritten while a round read it stopped `labelloop run` for good (a retry's
    # ingest finds it changed and rounds leave it out); and the failure that ended the loop
    # had no line in its JSON log, whose last line still promised a retry.
    import pipeline.round.steps
    from labeling.studio.errors import StudioError
    from training.images import ImageError

    with _ingested(tmp_path, "broken-file") as project:
        raised = [ImageError("cannot read image x.png: corrupt or truncated image")]

        def flaky(project, **kwargs):
            if raised:
                raise raised.pop()
            return {"id": 1, "stats": {}}

        monkeypatch.setattr(pipeline.round.steps, "run_round", flaky)
        failed = []
        assert run_loop(project, every_s=0.01, max_rounds=1, stop=StopFlag(),
                        on_failure=lambda err, n: failed.append((str(err), n))) == 1
        assert failed == [("cannot read image x.png: corrupt or truncated image", 1)]
        assert not (project.config.workspace_dir / "loop-failure.json").exists()

    def down(project, **kwargs):
        raise StudioError("Label Studio did not answer in time")

    monkeypatch.setattr(pipeline.round.steps, "run_round", down)
    done = runner.invoke(app, ["run", "--every", "1s", "--max-failures", "2", "--config",
                               str(tmp_path)])
    assert done.exit_code == 2
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert [sorted(x) for x in lines] == [["failures_in_a_row", "retry_in", "round_failed",
                                           "time"], ["loop_stopped", "time"]]
    assert lines[-1]["loop_stopped"] == "Label Studio did not answer in time"


def test_status_warns_of_a_moved_file_that_its_task_still_shows_until_moved_back(tmp_path):
    imgs = tmp_path / "imgs"
    with _ingested(tmp_path, "moved-file") as project:
        key_of = {i.path: i.key for i in project.store.items()}
        project.store.record_tasks(7, {key_of[str(imgs / "photo1.jpg")]: 11})  # shown by a task
        (imgs / "photo0.jpg").rename(imgs / "renamed0.jpg")
        (imgs / "photo1.jpg").rename(imgs / "renamed1.jpg")
        rid = project.store.start_round()
        record = ingest_new(project, progress=False)  # the round's ingest, as `labelloop round`
        assert record["added"] == 0 and record["moved"] == 1 and record["not_moved"] == 1
        assert record["not_moved_example"] == str(imgs / "renamed1.jpg")
        project.store.finish_round(rid, {"ingest": record})
        later = project.store.start_round()
        project.store.finish_round(later, {"ingest": ingest_new(project, progress=False)})
        warning = [w for w in project_status(project)["warnings"] if "moved or renamed" in w]
        assert warning == [f"round {rid}: 1 file(s) moved or renamed after their task was "
                           f"made, whose task shows the old name (e.g. now at "
                           f"{imgs / 'renamed1.jpg'}): move them back"]
        (imgs / "renamed1.jpg").rename(imgs / "photo1.jpg")  # moved back
        assert not any("moved or renamed" in w for w in project_status(project)["warnings"])


def test_an_overwritten_file_is_recorded_and_rounds_leave_its_old_item_out_until_it_is_back(
        tmp_path):
    imgs = tmp_path / "imgs"
    with _ingested(tmp_path, "overwritten") as project:
        store = project.store
        other = imgs / "photo0.jpg"
        old_bytes = other.read_bytes()
        old = next(i.key for i in store.items() if i.path == str(other))
        labeled = next(i.key for i in store.items() if i.path == str(imgs / "photo2.jpg"))
        store.add_labels([NewLabel(old, "cat", "human"), NewLabel(labeled, "dog", "human")])
        other.write_bytes((imgs / "photo1.jpg").read_bytes() + b"\0")  # another image's bytes
        unlabeled = imgs / "photo3.jpg"  # and an unlabeled one, which nobody must be asked about
        unasked_old = next(i.key for i in store.items() if i.path == str(unlabeled))
        assert unasked_old in unasked(project, {})
        unlabeled.write_bytes((imgs / "photo1.jpg").read_bytes() + b"\1")
        rid = store.start_round()
        record = ingest_new(project, progress=False)  # the round's ingest, as `labelloop round`
        assert record["replaced"] == 2 and record["replaced_example"] == str(other)
        store.finish_round(rid, {"ingest": record})
        new = next(i.key for i in store.items() if i.path == str(other) and i.key != old)
        # Its label stays, but no round trains on it, predicts it or asks about it: the file
        # holds the other image, which a person would be shown and a model read under it.
        assert store.current_classes()[old] == "cat"
        assert labeled_sets(project)[0] == {labeled: "dog"}
        assert old not in {i.key for i in items_to_predict(project, {old})}
        assert new in unasked(project, {}) and unasked_old not in unasked(project, {})
        warning = [w for w in project_status(project)["warnings"] if "another image" in w]
        assert warning == [f"2 item(s) whose image file now holds another image (e.g. {other})"
                           f": rounds and exports leave them out and their labels stay in the "
                           f"store; put their images back under those names to use them"]
        other.write_bytes(old_bytes)  # put back: the new image's item is the one without a file
        ingest_new(project, progress=False)
        assert labeled_sets(project)[0] == {old: "cat", labeled: "dog"}
        assert old in {i.key for i in items_to_predict(project, {old})}
        assert replaced_items(store) == {new, unasked_old}


def test_items_whose_file_is_gone_or_broken_are_left_out_of_rounds_until_it_is_back(tmp_path):
    # A round read every item's file and stopped with a traceback on the first one deleted or
    # truncated, at every retry (training, prediction; boxes and classes alike).
    imgs = tmp_path / "imgs"
    with _ingested(tmp_path, "gone-broken") as project:
        store = project.store
        key = {i.path: i.key for i in store.items()}
        gone, broken = imgs / "photo0.jpg", imgs / "photo1.jpg"
        store.add_labels([NewLabel(key[str(gone)], "cat", "human"),
                          NewLabel(key[str(broken)], "dog", "human")])
        gone_bytes, broken_bytes = gone.read_bytes(), broken.read_bytes()
        gone.unlink()
        broken.write_bytes(broken_bytes[:100])
        ingest_new(project, progress=False)  # the round's ingest, as `labelloop round`
        left_out = {key[str(gone)], key[str(broken)]}
        assert not left_out & set(labeled_sets(project)[0])
        assert not left_out & {i.key for i in items_to_predict(project, {}, everything=True)}
        assert not left_out & set(unasked(project, {}))
        # Nor the monitor's drift test, which read every image added since the last round.
        since = new_images(project, datetime(2000, 1, 1, tzinfo=UTC), {})
        assert since and not left_out & set(since)
        assert store.current_classes()[key[str(gone)]] == "cat"  # labels stay
        [warning] = [w for w in project_status(project)["warnings"] if "gone or cannot" in w]
        assert warning.startswith("2 item(s) whose image file is gone or cannot be read (e.g.")
        gone.write_bytes(gone_bytes)
        broken.write_bytes(broken_bytes)
        ingest_new(project, progress=False)
        assert labeled_sets(project)[0] == {key[str(gone)]: "cat", key[str(broken)]: "dog"}
        assert not [w for w in project_status(project)["warnings"] if "gone or cannot" in w]
        # Gone while the index did not hold it (deleted before gone files were marked, or
        # the index lost): found from the items' paths all the same.
        forget_seen(store, [str(gone)])
        gone.unlink()
        ingest_new(project, progress=False)
        assert unusable_items(store) == {key[str(gone)]: "the file is gone"}
        # Two items at one path (the second image overwrote the first's file), then the file
        # deleted: one gone row for the path, every later ingest fine (one crashed them all).
        third = imgs / "photo2.jpg"
        third.write_bytes(broken_bytes + b"\0")
        ingest_new(project, progress=False)
        third.unlink()
        for _ in range(2):
            ingest_new(project, progress=False)
        sharing = {i.key for i in store.items() if i.path == str(third)}
        assert len(sharing) == 2 and sharing <= set(unusable_items(store))


def test_a_pick_whose_file_is_gone_and_has_no_task_is_not_counted_as_waiting(tmp_path):
    from labeling.selections import Pick, record_picks

    imgs = tmp_path / "imgs"
    with _ingested(tmp_path, "gone-pick") as project:
        store = project.store
        key = {i.path: i.key for i in store.items()}
        record_picks(store, [Pick(key[str(imgs / f"photo{n}.jpg")], "random") for n in (0, 1)],
                     round_id=None)
        pool = project_status(project)["pool"]
        # Not in Label Studio yet (no push ran): the next round sends them.
        assert (pool["pending_in_label_studio"], pool["picked_not_sent_yet"]) == (0, 2)
        (imgs / "photo0.jpg").unlink()
        ingest_new(project, progress=False)
        # The push holds it back until the file is back: nobody can answer it meanwhile.
        assert project_status(project)["pool"]["picked_not_sent_yet"] == 1


def test_a_resumed_round_keeps_the_moved_files_its_first_ingest_found():
    # A round killed after its ingest resumes with a second ingest that finds nothing moved:
    # the record status warns from must keep the first one's count and example.
    from pipeline.round.steps import _add_counts

    first = {"folder": "f", "added": 2, "moved": 0, "not_moved": 1, "not_moved_example": "/x"}
    merged = _add_counts(first, {"folder": "f", "added": 1, "unread": 0})
    assert merged == {"folder": "f", "added": 3, "moved": 0, "not_moved": 1,
                      "not_moved_example": "/x", "unread": 0}
    # An earlier try's reason for reading nothing is not carried over a try that read.
    assert "skipped" not in _add_counts({"folder": "f", "skipped": "gone"},
                                        {"folder": "f", "added": 1})


def test_a_first_studio_start_names_the_key_file_and_never_prints_the_key(tmp_path, monkeypatch):
    from labeling.studio import server

    images = tmp_path / "images"
    images.mkdir()
    runner = CliRunner()
    made = runner.invoke(app, ["init", "--classes", "cat,dog", "--images", str(images),
                               "--name", "keyless", "--folder", str(tmp_path)])
    assert made.exit_code == 0, made.output
    key = "0123456789abcdef0123456789abcdef01234567"
    token = tmp_path / "token"
    token.write_text(key + "\n")
    info = server.ServerInfo(url="http://127.0.0.1:8080", port=8080, pid=1, username="admin",
                             token_file=token, password_file=tmp_path / "password",
                             log_file=tmp_path / "log", document_root=images, first_start=True)
    # The server itself is started by the integration tests; here only what the command says.
    monkeypatch.setattr(server, "resolve_executable", lambda *a, **k: "label-studio")
    monkeypatch.setattr(server, "start", lambda *a, **k: info)
    started = runner.invoke(app, ["studio", "start", "--config", str(tmp_path)])
    assert started.exit_code == 0, started.output
    assert str(token) in started.output and key not in started.output


def test_studio_push_and_sync_wait_for_the_workspace_like_a_round(tmp_path):
    # Beside a round (or another push) a push sent the same items twice, and a sync marked the
    # round's new tasks deleted: both hold the workspace lock, as `labelloop round` does.
    assert _init(tmp_path, "--name", "locked").exit_code == 0
    config = find_config(tmp_path / "labelloop.toml")
    with WorkspaceLock(config.workspace_dir / "lock", command="labelloop round"):
        for command in (["studio", "push"], ["studio", "sync"]):
            result = runner.invoke(app, [*command, "-c", str(tmp_path)])
            assert result.exit_code == 3, result.output
            assert "another labelloop process holds the workspace" in result.output
            assert "`labelloop round`" in result.output


def test_a_rounds_summary_names_the_champion_it_predicted_with():
    # Stopped at predict with v5 the champion, rolled back to v1, resumed: the round predicted
    # with v1, and its summary (and status) said champion=5.
    from pipeline.status import round_summary

    resumed = {"promote": {"champion": "5"}, "predict": {"version": "1", "predicted": 40}}
    assert round_summary(resumed)["champion"] == "1"
    assert round_summary({"promote": {"champion": "5"}})["champion"] == "5"  # nothing predicted
