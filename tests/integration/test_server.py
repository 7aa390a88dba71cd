"""The embedded server: private token file, no-op restart, busy port, stop by exact PID."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import pytest

from labeling.studio import server
from labeling.studio.connection import connect
from labeling.studio.errors import ServerError

pytestmark = pytest.mark.integration


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_token_and_password_files_are_private_and_never_logged(studio_server):
    files = server.ServerFiles(studio_server.data_dir)
    assert _mode(files.token_file) == 0o600
    assert _mode(files.password_file) == 0o600
    assert _mode(files.pid_file) == 0o600
    assert _mode(files.data_dir) == 0o700
    log = files.log_file.read_text(errors="replace")
    assert studio_server.token not in log
    assert files.password_file.read_text().strip() not in log


def test_status_reports_the_running_server_and_start_again_is_a_no_op(studio_server):
    found = server.status(studio_server.data_dir)
    assert found.state == "running" and found.url == studio_server.url
    again = server.start(studio_server.data_dir, port=studio_server.port,
                         images_dir=studio_server.images_dir,
                         executable=studio_server.executable)
    assert again.already_running and not again.first_start
    assert again.pid == found.pid


def test_a_busy_port_is_detected_before_starting(studio_server, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} .* already in use"):
            server.start(tmp_path / "studio", port=port, images_dir=tmp_path / "images",
                         executable=studio_server.executable)
    assert not (tmp_path / "studio" / "server.pid").exists()


def test_a_missing_executable_names_the_setup_script(studio_server, tmp_path):
    with pytest.raises(ServerError, match="setup_studio.sh"):
        server.resolve_executable(tmp_path / "bin" / "label-studio")
    assert server.resolve_executable(None) == studio_server.executable


def test_stop_refuses_a_pid_that_is_no_longer_label_studio(tmp_path, unused_port):
    decoy = subprocess.Popen(["sleep", "60"])
    try:
        files = server.ServerFiles(tmp_path)
        files.pid_file.write_text(json.dumps({"pid": decoy.pid, "port": unused_port,
                                              "url": "http://127.0.0.1:1", "username": "x",
                                              "document_root": str(tmp_path)}))
        with pytest.raises(ServerError, match="no longer a label-studio process"):
            server.stop(tmp_path)
        assert decoy.poll() is None  # not signalled
        assert server.status(tmp_path).state == "stale"
    finally:
        decoy.kill()
        decoy.wait()


def test_stop_stops_exactly_the_pid_in_the_pid_file(studio_server):
    files = server.ServerFiles(studio_server.data_dir)
    pid = json.loads(files.pid_file.read_text())["pid"]
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert server.stop(studio_server.data_dir) is True
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert bystander.poll() is None
        assert not files.pid_file.exists()
        assert server.status(studio_server.data_dir).state == "stopped"
        assert server.stop(studio_server.data_dir) is False
    finally:
        bystander.kill()
        bystander.wait()
        info = studio_server.restart()
    assert info.pid != pid and not info.already_running and not info.first_start
    assert connect(studio_server.url, studio_server.token).user_email == info.username
