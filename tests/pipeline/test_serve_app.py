"""The HTTP side of `labelloop serve` on bodies and failures that must not become a 500."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi.testclient import TestClient

from pipeline.backend.app import make_app
from training.checkpoint import CheckpointError


def _client(predict) -> TestClient:
    backend = SimpleNamespace(predict=predict, health=lambda: {"status": "UP"},
                              setup=None, webhook=None, versions=None)
    return TestClient(make_app(backend), raise_server_exceptions=False)


def test_a_damaged_champion_checkpoint_is_a_503_with_the_way_out():
    def damaged(body):
        raise CheckpointError("cannot read checkpoint /w/v4.pt (corrupt or not a checkpoint)")

    got = _client(damaged).post("/predict", json={"tasks": []})
    assert got.status_code == 503  # was a 500 and a traceback in serve's log
    assert "v4.pt" in got.json()["error"] and "models rollback" in got.json()["error"]


def test_a_body_nested_too_deeply_is_a_400():
    got = _client(lambda body: {"results": []}).post(
        "/predict", content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"})
    assert got.status_code == 400 and "nested too deeply" in got.json()["error"]
