"""The model registry on a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from pipeline.registry.registry import ModelRegistry, RegistryError, default_tracking_uri


def make_registry(workspace: Path, name: str = "digits") -> ModelRegistry:
    workspace.mkdir(parents=True, exist_ok=True)
    return ModelRegistry(default_tracking_uri(workspace), name,
                         artifact_dir=workspace / "mlartifacts")


def checkpoint(folder: Path, name: str = "model.pt", data: bytes = b"weights") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema, made once: creating the schema (MLflow's
    migrations) takes seconds, so each test starts from a copy."""
    folder = tmp_path_factory.mktemp("template")
    make_registry(folder).check()
    return folder / "mlflow.db"


@pytest.fixture
def ws(tmp_path, monkeypatch, empty_store) -> Path:
    """A workspace with an empty MLflow store; the current folder is an empty ./cwd, where any
    ./mlruns MLflow made by default would land."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    workspace = tmp_path / "my workspace"
    workspace.mkdir()
    shutil.copy(empty_store, workspace / "mlflow.db")
    return workspace


def register(reg: ModelRegistry, ws: Path, snapshot: str, **kw) -> str:
    ckpt = checkpoint(ws / "models", f"{snapshot}.pt", snapshot.encode())
    return reg.register(ckpt, params={"lr": 0.002, "epochs": 3},
                        metrics={"n_train": 100, "eval_accuracy": 0.9}, snapshot=snapshot, **kw)


def test_register_is_idempotent_by_snapshot(ws):
    reg = make_registry(ws)
    assert reg.versions() == []
    assert register(reg, ws, "aaa", round_id=1, tags={"temperature": 1.5}) == "1"
    assert register(reg, ws, "aaa", round_id=2) == "1"
    assert register(reg, ws, "bbb", round_id=2) == "2"
    versions = reg.versions()
    assert [v.version for v in versions] == ["1", "2"]
    first = versions[0]
    assert first.snapshot == "aaa" and first.round_id == 1
    assert first.metrics == {"n_train": 100.0, "eval_accuracy": 0.9}
    assert first.params == {"lr": "0.002", "epochs": "3"}
    assert first.tags["temperature"] == "1.5"
    assert reg.checkpoint_path("1").read_bytes() == b"aaa"
    assert reg.checkpoint_path("v2").read_bytes() == b"bbb"


def test_artifacts_land_in_the_workspace_not_the_current_folder(ws):
    reg = make_registry(ws)
    version = register(reg, ws, "aaa")
    reg.log_round(1, {"coverage": 0.5})
    path = reg.checkpoint_path(version)
    assert path.is_relative_to(ws / "mlartifacts")
    assert list(Path.cwd().iterdir()) == []


def test_a_remote_checkpoint_is_downloaded_into_the_workspace_cache(ws, monkeypatch):
    reg = make_registry(ws)
    register(reg, ws, "aaa")
    # As with a tracking server's mlflow-artifacts:/ URIs: no local folder to read from.
    monkeypatch.setattr("pipeline.registry.registry.local_folder", lambda uri: None)
    path = reg.checkpoint_path("1")
    assert path == ws / "model-cache" / "1" / "aaa.pt"
    assert path.read_bytes() == b"aaa"
    assert reg.checkpoint_path("1") == path
    assert sorted(p.name for p in (ws / "model-cache").iterdir()) == ["1"]


def test_crash_after_the_run_before_registration_reuses_the_run(ws, monkeypatch, ledger):
    reg = make_registry(ws)

    def crash(self, client):
        raise KeyboardInterrupt("killed after the run was logged")

    with monkeypatch.context() as m:
        m.setattr(ModelRegistry, "_ensure_model", crash)
        with pytest.raises(KeyboardInterrupt):
            register(reg, ws, "aaa")
    again = make_registry(ws)
    ledger.fault("crash between logging a run and registering its version",
                 outcome="next register reused the run", lost_labels=0, duplicate_tasks=0)
    assert register(again, ws, "aaa") == "1"
    assert register(again, ws, "aaa") == "1"
    client = again._client()
    experiment = client.get_experiment_by_name("digits")
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_champion_is_none_until_promoted(ws):
    reg = make_registry(ws)
    register(reg, ws, "aaa")
    assert reg.champion() is None
    promoted = reg.promote("1", reason="first model")
    assert promoted.is_champion
    assert reg.champion().version == "1"
    assert [v.aliases for v in reg.versions()] == [("champion",)]


def test_promote_and_rollback_restore_the_previous_champion_with_reasons(ws):
    reg = make_registry(ws)
    for snap in ("aaa", "bbb", "ccc"):
        register(reg, ws, snap)
    reg.promote("1", reason="first model")
    reg.promote("2", reason="v2 better on held-out")
    reg.promote("2", reason="promoting the champion again records nothing")
    assert reg.rollback(reason="v2 mislabels class 7").version == "1"
    assert reg.champion().version == "1"
    reg.promote("3", reason="v3 better")
    assert reg.rollback(reason="v3 worse in production").version == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(reason="again")
    events = make_registry(ws).history()
    assert [(e.action, e.from_version, e.to_version, e.reason) for e in events] == [
        ("promote", None, "1", "first model"),
        ("promote", "1", "2", "v2 better on held-out"),
        ("rollback", "2", "1", "v2 mislabels class 7"),
        ("promote", "1", "3", "v3 better"),
        ("rollback", "3", "1", "v3 worse in production"),
    ]
    assert "v2 mislabels class 7" in str(events[2])


def test_rollback_without_a_previous_champion_is_an_error(ws):
    reg = make_registry(ws)
    register(reg, ws, "aaa")
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(reason="nothing to go back to")
    reg.promote("1", reason="first")
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(reason="nothing to go back to")
    assert reg.champion().version == "1"


def test_a_move_logged_but_not_applied_is_finished_by_the_next_promote(ws, monkeypatch):
    reg = make_registry(ws)
    register(reg, ws, "aaa")
    register(reg, ws, "bbb")
    reg.promote("1", reason="first")
    with monkeypatch.context() as m:
        m.setattr(ModelRegistry, "_apply", lambda *a: (_ for _ in ()).throw(
            KeyboardInterrupt("killed between the log and the alias")))
        with pytest.raises(KeyboardInterrupt):
            reg.promote("2", reason="better")
    assert reg.champion().version == "1"
    again = make_registry(ws)
    again.promote("2", reason="better")  # the round's promote step, re-run
    assert again.champion().version == "2"
    assert [e.to_version for e in again.history()] == ["1", "2"]


def test_unknown_version_lists_the_valid_ones(ws):
    reg = make_registry(ws)
    with pytest.raises(RegistryError, match="none registered yet"):
        reg.promote("1", reason="x")
    register(reg, ws, "aaa")
    register(reg, ws, "bbb")
    with pytest.raises(RegistryError, match=r"no version '7'.*valid versions: 1, 2"):
        reg.promote("7", reason="x")
    with pytest.raises(RegistryError, match="valid versions: 1, 2"):
        reg.checkpoint_path("abc")


def test_missing_checkpoint_and_bad_inputs_are_clear_errors(ws):
    reg = make_registry(ws)
    with pytest.raises(RegistryError, match="checkpoint not found"):
        reg.register(ws / "nope.pt", params={}, metrics={}, snapshot="aaa")
    ckpt = checkpoint(ws)
    with pytest.raises(RegistryError, match="metric 'acc' is 'high'"):
        reg.register(ckpt, params={}, metrics={"acc": "high"}, snapshot="aaa")
    with pytest.raises(RegistryError, match="snapshot"):
        reg.register(ckpt, params={}, metrics={}, snapshot="a'b")
    register(reg, ws, "aaa")
    with pytest.raises(RegistryError, match="needs a reason"):
        reg.promote("1", reason=" ")
    for path in (ws / "mlartifacts").rglob("aaa.pt"):
        path.unlink()
    with pytest.raises(RegistryError, match="checkpoint of version 1 is missing"):
        reg.checkpoint_path("1")


def test_check_passes_on_a_new_and_an_existing_store_quietly(ws, capfd):
    (ws / "mlflow.db").unlink()
    reg = make_registry(ws)
    reg.check()
    register(reg, ws, "aaa")
    make_registry(ws).check()
    captured = capfd.readouterr()
    assert "INFO" not in captured.err and "WARNING" not in captured.err
    assert list(Path.cwd().iterdir()) == []


def test_check_fails_fast_on_a_corrupt_store(tmp_path, ledger):
    (tmp_path / "mlflow.db").write_bytes(b"this is not a database\n" * 200)
    reg = make_registry(tmp_path)
    start = time.monotonic()
    with pytest.raises(RegistryError, match="corrupt"):
        reg.check()
    ledger.fault("MLflow store file corrupt", outcome="refused with a message",
                 lost_labels=0, duplicate_tasks=0)
    assert time.monotonic() - start < 3


def test_check_fails_fast_on_a_missing_folder(tmp_path):
    reg = ModelRegistry(f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}", "digits",
                        artifact_dir=tmp_path / "nope" / "mlartifacts")
    with pytest.raises(RegistryError, match="does not exist"):
        reg.check()
    with pytest.raises(RegistryError, match="does not exist"):
        reg.versions()
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("uri, names", [
    ("postgresql+psycopg://bob:pw@127.0.0.1:1/x", "database postgresql+psycopg://bob:***@"),
    ("http://127.0.0.1:1", "server http://127.0.0.1:1"),
])
def test_a_store_that_does_not_answer_is_one_quick_error_not_a_silent_wait(tmp_path, uri,
                                                                            names):
    # MLflow retries a refused connection for minutes without a word; any call, not only
    # check(), gets the probe first (`labelloop models list` sat silent past 100 s).
    reg = ModelRegistry(uri, "digits", artifact_dir=tmp_path / "mlartifacts")
    with pytest.raises(RegistryError, match="unreachable") as err:
        reg.versions()
    assert names in str(err.value) and ":pw@" not in str(err.value)


def test_check_fails_fast_on_a_locked_store(ws):
    reg = make_registry(ws)
    reg.check()
    other = sqlite3.connect(ws / "mlflow.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(RegistryError, match="locked"):
            make_registry(ws).check()
        assert time.monotonic() - start < 4
    finally:
        other.execute("ROLLBACK")
        other.close()
    reg.check()


def test_log_round_keeps_one_run_per_round(ws):
    reg = make_registry(ws)
    first = reg.log_round(1, {"coverage": 0.4, "human_labels": 100})
    assert reg.log_round(1, {"coverage": 0.5}) == first
    assert reg.log_round(2, {"coverage": 0.7}) != first
    run = reg._client().get_run(first)
    assert run.data.metrics == {"coverage": 0.5, "human_labels": 100.0}
    assert reg.versions() == []  # round runs are not model versions


def test_a_model_name_with_quotes_works(ws):
    reg = make_registry(ws, name="Bob's digits")
    assert register(reg, ws, "aaa") == "1"
    assert register(reg, ws, "aaa") == "1"
    assert [v.version for v in reg.versions()] == ["1"]
