"""A local S3 endpoint for tests: moto's server on loopback, in memory, one per test session.

Loaded for every test by ``tests/conftest.py`` (``pytest_plugins``).
``s3`` points boto3's standard chain at the server for one test (``AWS_ENDPOINT_URL`` and dummy
credentials; no ~/.aws file is read) and gives it an empty bucket of its own.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import training.sources
from tests.ports import free_port


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of a moto S3 server started for this session (stopped by its PID)."""
    executable = Path(sys.executable).parent / "moto_server"
    if not executable.is_file():
        pytest.fail(f"{executable} is missing: pip install -e '.[dev]' (moto[server])")
    port = free_port()
    proc = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not come up on {url}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Bucket:
    """A test's bucket on the local endpoint, and a boto3 client for it."""

    name: str
    client: object
    endpoint: str

    def put(self, key: str, data: bytes) -> str:
        """Upload ``data`` as ``key``; its ``s3://`` path."""
        self.client.put_object(Bucket=self.name, Key=key, Body=data)
        return f"s3://{self.name}/{key}"


def point_boto3_at(monkeypatch, endpoint: str, tmp_path: Path) -> None:
    """boto3's standard chain for this test: the endpoint and dummy credentials, no files."""
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                        }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A client made under another test's environment must not be reused.
    monkeypatch.setattr(training.sources, "_clients", {})


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path) -> Bucket:
    import boto3

    point_boto3_at(monkeypatch, s3_server, tmp_path)
    client = boto3.session.Session().client("s3")
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, client, s3_server)
