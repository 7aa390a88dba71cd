"""A one-machine Ray cluster on loopback (``ray start --head --block`` as a child process):
what the tests and benchmarks run the Ray engine against, and what a user without a cluster
can start to try it. Stopped by the PID of the process that started it, never by ``ray stop``
(which ends every Ray process on the machine, other people's too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# Each checked on this kind of machine (see the stack notes): without the first, Ray binds the
# routable address on every interface whatever --node-ip-address says; without the last, a
# driver that has no token retries "InvalidAuthToken" for a minute without raising.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``ray start --head`` on 127.0.0.1 with ``cpus`` CPUs; ``address`` is what
    ``[compute] address`` takes. ``env`` adds to the cluster's environment (its workers
    inherit it: AWS settings, PYTHONPATH). Raises ``RuntimeError`` if it is not up within
    ``timeout_s``, after stopping what it started."""

    def __init__(self, *, cpus: int = 2, env: dict[str, str] | None = None,
                 timeout_s: float = 120, log: Path | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray_bin = Path(sys.executable).with_name("ray")
        command = [str(ray_bin), "start", "--head", "--block", f"--port={self.port}",
                   "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
                   "--include-dashboard=false", "--disable-usage-stats"]
        self._log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        # A shell watches this process and `ray start`: when either is gone it ends its own
        # process group, so a cluster never outlives a test or benchmark killed without its
        # clean-up (the raylet's workers end with the raylet).
        watched = ('"$@" & ray=$!; '
                   f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $ray 2>/dev/null; "
                   "do sleep 1; done; kill -KILL 0")
        # Its own session: kill() ends the whole group it made (raylet, GCS, workers).
        self.process = subprocess.Popen(["/bin/sh", "-c", watched, "sh", *command],
                                        env={**os.environ, **RAY_ENV, **(env or {})},
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self._wait(timeout_s)
        except BaseException:
            self.kill()
            raise

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited ({self.process.returncode}); its output "
                                   "is in the log given to LocalCluster, if any")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                # The GCS port answers before the raylet registers: give it a moment.
                time.sleep(1.0)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Ray did not come up on {self.address} within {timeout_s:.0f} s")

    def kill(self) -> None:
        """End every process of this cluster (its process group), by the PID we started."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
