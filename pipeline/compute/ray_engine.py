"""The predict step on Ray (``[compute] engine = "ray"``): Ray Data ``map_batches`` over an
actor pool. Each actor receives the champion once (through Ray's object store) and calls the
local engine's own prediction function, ``training.predict.predict``, on its batches; every row
carries its item key, and the driver joins the results on it, because Ray Data does not keep
row order. Images are read by the actors themselves, through ``training.sources`` (local paths
that every node sees, or ``s3://`` objects with the node's own AWS settings).

What can go wrong, and what the user gets (``ComputeError``, one line saying what to do; the
round writes nothing, so its next run resumes at this step): Ray not installed; a cluster that
cannot be reached; one that dies (its port stops answering), or a step that passes
``timeout_s``. An image that cannot be read raises the same ``ImageError`` as on the local
engine. The driver is a child process, so none of this can end the caller's own process.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.compute.errors import ComputeError
from pipeline.compute.local_cluster import RAY_ENV
from pipeline.project.config import ComputeSection
from training._progress import progress_bar
from training.images import ImageError
from training.predict import Predictions
from training.sources import RemoteUnavailable
from training.trained import TrainedModel

__all__ = ["ComputeSection", "RayEngine"]

# While the step runs, the cluster's port is tried every PROBE_S seconds; after PROBES_LOST
# failures in a row the step stops.
PROBE_S = 2.0
# Marks an error column whose worker could not read its images at all (not a bad image).
UNREADABLE = "unreadable\t"
PROBES_LOST = 3
# What an HTTP/2 client sends first: the preface, then an empty SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_NO_RAY = ('[compute] engine = "ray" needs Ray: pip install "labelloop[ray]" '
           '(or set engine = "local")')


class _Predictor:
    """One actor: the model, loaded once; then batches of {key, path} rows."""

    def __init__(self, model_box: list, embeddings: bool) -> None:
        import ray
        import torch

        # Fractional CPUs give an actor one thread; torch would otherwise take every core.
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model = ray.get(model_box[0])
        self.embeddings = embeddings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from training.predict import predict

        paths = [str(p) for p in batch["path"]]
        n = len(paths)
        try:
            out, error = predict(self.model, paths, batch_size=n, num_workers=0,
                                 embeddings=self.embeddings), ""
        except ImageError as err:
            # Ray Data re-raises a worker's exception as its own type, the cause gone: the
            # error travels as a column instead, and the driver raises it as it is.
            out, error = _zeros(self.model, n, self.embeddings), str(err)
        except (RemoteUnavailable, OSError) as err:
            # The node cannot read the images at all (no AWS credentials there, a path only
            # the driver's machine has): the cause was left in Ray's own logs on the head.
            out, error = _zeros(self.model, n, self.embeddings), UNREADABLE + str(err)
        rows = {"key": batch["key"], "probs": out.probs, "logits": out.logits,
                "error": np.array([error] * n)}
        if self.embeddings:
            rows["embeddings"] = out.embeddings
        return rows


class RayEngine:
    name = "ray"

    def __init__(self, compute: ComputeSection, *, log: Path | None = None) -> None:
        """``log``: where the driver's own output goes (Ray is chatty on stderr); None keeps
        it on this process's stderr."""
        self.compute = compute
        self.log = log

    def predict(self, model: TrainedModel, paths: Sequence[str], keys: Sequence[str], *,
                embeddings: bool, progress: bool) -> Predictions:
        """``model``'s predictions for ``paths`` (item ``keys`` alongside, unique), rows in
        their order. Raises ``ComputeError`` or ``ImageError``."""
        keys = [str(k) for k in keys]
        if len(set(keys)) != len(keys) or len(keys) != len(paths):
            raise ValueError("the Ray engine needs one unique key per path")
        if not keys:
            return _zeros(model, 0, embeddings)
        if importlib.util.find_spec("ray") is None:
            raise ComputeError(_NO_RAY)
        self._check_reachable()
        # The driver runs in a child process: when a cluster dies under it, Ray ends the
        # driver's whole process (after a minute without its GCS), and that must not be this
        # one, a round or the scheduled loop. The child's result comes back in a file.
        spawn = multiprocessing.get_context("spawn")
        done = spawn.Value("q", 0)
        with tempfile.TemporaryDirectory(prefix="labelloop-ray-") as tmp:
            result = Path(tmp) / "result.npz"
            failure = Path(tmp) / "failure.json"
            child = spawn.Process(target=_driver, daemon=True, args=(
                self.compute.model_dump(), model, list(map(str, paths)), keys, embeddings,
                str(result), str(failure), done, str(self.log) if self.log else None))
            child.start()
            try:
                self._wait(child, done, len(keys), progress)
            except KeyboardInterrupt:
                _interrupt(child)  # asked twice: the driver shuts its Ray down, then goes
                raise
            if failure.exists():
                kind, message = json.loads(failure.read_text())
                raise (ImageError if kind == "image" else ComputeError)(message)
            if child.exitcode != 0 or not result.exists():
                raise ComputeError(
                    f"the Ray driver ended with exit code {child.exitcode} before finishing "
                    f"({self._where()}: the cluster may have died{self._see_log()}); nothing "
                    "was saved: run the round again to resume at the predict step")
            with np.load(result) as rows:
                return _joined(dict(rows), keys, embeddings)

    def _wait(self, child, done, total: int, progress: bool) -> None:
        deadline = time.monotonic() + self.compute.timeout_s
        with progress_bar(progress, f"predicting on Ray ({self.compute.actors} actors)",
                          total) as bar:
            shown, silent, next_probe = 0, 0, time.monotonic() + PROBE_S
            while child.is_alive():
                child.join(0.5)
                now = done.value
                bar.advance(now - shown)
                shown = now
                if self._probe_port() and time.monotonic() > next_probe:
                    next_probe = time.monotonic() + PROBE_S
                    silent = silent + 1 if self._port_error(timeout_s=1) else 0
                    if silent >= PROBES_LOST:
                        # Ray's driver would notice after a minute and end itself.
                        child.kill()
                        child.join(30)
                        raise ComputeError(
                            f"the Ray cluster at {self.compute.address} stopped answering "
                            f"mid-step{self._see_log()}; nothing was saved: restart it, then "
                            "run the round again to resume at the predict step")
                if time.monotonic() > deadline:
                    child.kill()
                    child.join(30)
                    raise ComputeError(
                        f"the Ray step did not finish within [compute] timeout_s = "
                        f"{self.compute.timeout_s:g} s ({self._where()}); nothing was saved: "
                        "check the cluster, then run the round again to resume at the predict "
                        "step")

    def _probe_port(self) -> bool:
        # Ray finds "auto" itself; a ray:// client address has its own handshake.
        address = self.compute.address
        return bool(address) and address != "auto" and not address.startswith("ray://")

    def _port_error(self, *, timeout_s: float) -> Exception | None:
        """None when the cluster's GCS port takes a connection, else why not."""
        host, _, port = self.compute.address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return None
        except (OSError, ValueError) as err:
            return err

    def _see_log(self) -> str:
        return f"; Ray's output is in {self.log}" if self.log else ""

    def _check_reachable(self) -> None:
        if not self._probe_port():
            return
        if err := self._port_error(timeout_s=5):
            raise _unreachable(self.compute, err)
        tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")  # as Ray reads it
        if not tls and not self._speaks_grpc(timeout_s=5):
            # ray.init would retry such a port for ever, not fail.
            raise ComputeError(
                f"[compute] address = {self.compute.address!r} answers, but not as a Ray "
                "cluster: give the address `ray start --head` printed (its GCS port, 6379 "
                "unless --port says otherwise), not the dashboard's or another server's")

    def _speaks_grpc(self, *, timeout_s: float) -> bool:
        """Whether the address answers as Ray's GCS does, a gRPC server: to an HTTP/2 client
        preface (with its empty SETTINGS frame), a SETTINGS frame (type 4) first."""
        host, _, port = self.compute.address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)),
                                          timeout=timeout_s) as conn:
                conn.sendall(HTTP2_PREFACE)
                head = b""
                while len(head) < 9 and (chunk := conn.recv(9 - len(head))):
                    head += chunk
        except (OSError, ValueError):
            return False
        return len(head) == 9 and head[3] == 4

    def _where(self) -> str:
        return _where(self.compute)


def _driver(compute: dict, model: TrainedModel, paths: list[str], keys: list[str],
            embeddings: bool, result: str, failure: str, done, log: str | None) -> None:
    """The child process: connect, map, write the rows to ``result``; or write what went
    wrong to ``failure`` as [kind, message]."""
    # A session of its own: a Ctrl-C at the terminal (the whole foreground group) ended this
    # driver and a private Ray's processes, and the step read as a cluster that died. The
    # round decides: it stops after this step, or interrupts the driver on a second Ctrl-C.
    os.setsid()
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
    compute_section = ComputeSection(**compute)
    try:
        ray = _import_ray(loopback=_is_loopback(compute_section.address))
        _connect(ray, compute_section)
        try:
            rows = _map(ray, compute_section, model, paths, keys, embeddings, done)
        finally:
            ray.shutdown()
        arrays = {k: np.concatenate(v) for k, v in rows.items() if v}
        if "key" in arrays:  # none: no rows came back, which the join reports
            arrays["key"] = arrays["key"].astype(str)  # Ray hands strings back as objects
        np.savez(result, **arrays)
    except ImageError as err:
        Path(failure).write_text(json.dumps(["image", str(err)]))
    except ComputeError as err:
        Path(failure).write_text(json.dumps(["compute", str(err)]))
    except Exception as err:  # noqa: BLE001 - Ray wraps causes in many types
        Path(failure).write_text(json.dumps(["compute",
                                             str(_explained(err, _where(compute_section)))]))


def _connect(ray, compute: ComputeSection) -> None:
    try:
        if compute.address:
            ray.init(address=compute.address, log_to_driver=False, logging_level="warning")
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise _unreachable(compute, err) from None


def _map(ray, compute: ComputeSection, model, paths, keys, embeddings, done) -> dict[str, list]:
    import ray.data
    from ray.data import ActorPoolStrategy

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    rows = [{"key": k, "path": p} for k, p in zip(keys, paths, strict=True)]
    blocks = max(1, min(len(rows) // compute.batch_size + 1, compute.actors * 8))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _Predictor,
        fn_constructor_kwargs={"model_box": [ray.put(model)], "embeddings": embeddings},
        batch_size=compute.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=compute.actors),
        num_cpus=compute.cpus_per_actor,
    )
    out: dict[str, list] = {"key": [], "probs": [], "logits": [], "embeddings": []}
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        raise_failed(batch)
        for name in out:
            if name in batch:
                out[name].append(batch[name])
        with done.get_lock():
            done.value += len(batch["key"])
    return out


def _interrupt(child) -> None:
    """SIGINT to the driver's session (the driver runs ``ray.shutdown`` on its way out);
    killed if it has not ended within 30 s."""
    try:
        os.killpg(child.pid, signal.SIGINT)
    except (ProcessLookupError, PermissionError):
        return
    child.join(30)
    if child.is_alive():
        child.kill()
        child.join(5)


def raise_failed(batch: dict[str, np.ndarray]) -> None:
    """The error a worker put in the batch's ``error`` column, raised here as what it was."""
    if failed := next((str(e) for e in batch["error"] if e), None):
        if failed.startswith(UNREADABLE):
            raise ComputeError(f"a Ray worker cannot read the images: "
                               f"{failed.removeprefix(UNREADABLE)}; every node needs the "
                               "image paths, or for s3:// its own AWS settings")
        raise ImageError(failed)


def _where(compute: ComputeSection) -> str:
    return f"cluster {compute.address}" if compute.address else "a private Ray"


def _unreachable(compute: ComputeSection, err: Exception) -> ComputeError:
    return ComputeError(
        f"cannot reach the Ray cluster at [compute] address = {compute.address!r} ({err}): "
        "start it (ray start --head) or fix the address; the round resumes at the predict "
        "step")


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0] if ":" in address else address
    return host in ("", "127.0.0.1", "localhost", "::1", "[::1]")


def _import_ray(*, loopback: bool):
    """Ray, imported with the settings that keep a one-machine Ray on 127.0.0.1 when the
    cluster is here (Ray reads them when it is imported). A cluster elsewhere gets none of
    them: its nodes must reach this driver at its routable address."""
    if loopback:
        for name, value in RAY_ENV.items():
            os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError:  # found by the parent, yet not importable here: a broken install
        raise ComputeError(_NO_RAY) from None
    return ray


def _explained(err: Exception, where: str) -> ComputeError:
    """Anything else from Ray, as one line naming the cluster (without Ray's colour codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return ComputeError(f"the Ray step failed on {where}: {first[:300]}. Nothing was saved; "
                        "run the round again to resume at the predict step")


def _joined(rows: dict[str, np.ndarray], keys: list[str], embeddings: bool) -> Predictions:
    """Rows back in the order of ``keys``; every key exactly once, or ``ComputeError``."""
    got = rows.get("key", np.array([], dtype=str))
    where = {k: i for i, k in enumerate(got)}
    if len(where) != len(got) or set(where) != set(keys):
        raise ComputeError(f"Ray returned {len(got)} rows ({len(where)} keys) for "
                           f"{len(keys)} items; nothing was saved")
    order = np.array([where[k] for k in keys])
    feats = rows["embeddings"][order] if embeddings else None
    return Predictions(probs=rows["probs"][order], logits=rows["logits"][order],
                       embeddings=feats)


def _zeros(model: TrainedModel, n: int, embeddings: bool) -> Predictions:
    """``n`` rows of zeros shaped as ``model``'s predictions."""
    k = len(model.classes)
    dim = model.module.embedding_dim
    return Predictions(probs=np.zeros((n, k), np.float32), logits=np.zeros((n, k), np.float32),
                       embeddings=np.zeros((n, dim), np.float32) if embeddings else None)
