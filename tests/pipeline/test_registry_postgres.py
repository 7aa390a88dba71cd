"""The model registry with its MLflow tracking and registry store on PostgreSQL (the session's
throwaway server): versions registered, promoted and rolled back as on SQLite, and there in
the database for any other process."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.engine import make_url

from pipeline.registry.registry import ModelRegistry, RegistryError
from tests.pipeline.test_registry import register
from tests.postgres import PASSWORD


def test_promote_and_rollback_on_postgresql(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()

    def registry() -> ModelRegistry:
        return ModelRegistry(postgres_url, "digits", artifact_dir=workspace / "mlartifacts")

    reg = registry()
    reg.check()  # MLflow creates its schema in the new database
    for snap in ("aaa", "bbb", "ccc"):
        register(reg, workspace, snap)
    assert register(reg, workspace, "bbb") == "2"  # idempotent by snapshot
    reg.promote("1", reason="first model")
    reg.promote("2", reason="v2 better on held-out")
    assert reg.rollback(reason="v2 mislabels class 7").version == "1"
    reg.promote("3", reason="v3 better")

    again = registry()  # a new client, as another process would open it
    assert again.champion().version == "3"
    assert [v.version for v in again.versions()] == ["1", "2", "3"]
    assert again.rollback(reason="v3 worse in production").version == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        again.rollback(reason="again")
    assert [(e.action, e.to_version) for e in again.history()] == [
        ("promote", "1"), ("promote", "2"), ("rollback", "1"), ("promote", "3"),
        ("rollback", "1")]
    # In PostgreSQL itself: three versions of the model, the alias on version 1, and no
    # mlflow.db or ./mlruns anywhere.
    url = make_url(postgres_url)
    with psycopg.connect(host=url.query["host"], port=int(url.query["port"]),
                         user=url.username, dbname=url.database) as conn:
        versions = conn.execute("SELECT version FROM model_versions WHERE name = 'digits' "
                                "ORDER BY version").fetchall()
        aliases = conn.execute("SELECT alias, version FROM registered_model_aliases "
                               "WHERE name = 'digits'").fetchall()
    assert [v for (v,) in versions] == [1, 2, 3]
    assert aliases == [("champion", 1)]
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "mlruns").exists()
    checkpoint = again.checkpoint_path(again.champion().version)
    assert checkpoint.read_bytes() == b"aaa"


def test_a_refused_password_is_a_registry_error_that_shows_no_password(postgres_server,
                                                                      tmp_path):
    url = postgres_server.create_password_database()
    wrong = url.replace("labelloop_pw@", "labelloop_pw:wrong-pw@")
    reg = ModelRegistry(wrong, "digits", artifact_dir=tmp_path / "mlartifacts")
    with pytest.raises(RegistryError) as err:
        reg.check()
    assert "the MLflow store at postgresql+psycopg://labelloop_pw:***@" in str(err.value)
    assert "wrong-pw" not in str(err.value)
    right = ModelRegistry(url.replace("labelloop_pw@", f"labelloop_pw:{PASSWORD}@"), "digits",
                          artifact_dir=tmp_path / "mlartifacts")
    right.check()
    assert right.champion() is None
