"""The model registry: trained checkpoints as versions of one MLflow registered model.

- ``register`` logs one MLflow run (experiment ``<model_name>``) with the training parameters,
  metrics, the label snapshot (tag ``snapshot``) and the checkpoint file (artifact folder
  ``checkpoint/``), then registers it as a version of the model ``<model_name>``. A plain
  checkpoint file is registered with ``MlflowClient.create_model_version(source=<artifact
  folder URI>, run_id=...)``; it need not be an MLflow model. Registration is idempotent by
  snapshot: a version whose ``snapshot`` tag matches is returned as is, and a finished run of
  that snapshot left by a crash before registration is reused, so a re-run never adds a second
  version of the same labels (the first complete run of a snapshot wins).
- The champion is the model alias ``champion``.
- Promotions and rollbacks are recorded in the promotion log (``pipeline.registry.promotion_log``),
  appended and fsynced *before* the alias moves. If a process dies between the two, the next
  ``promote`` or ``rollback`` finishes the logged move first. The log also feeds ``rollback``
  (a stack of champions) and ``history``. The reason is also set as a tag on the version for
  the MLflow UI.
- Whether the store can be used is probed before a round changes anything
  (``pipeline.registry.mlflow_store``).
- With a local store (SQLite, a file or SQL database) artifacts go to ``artifact_dir``: each
  experiment is created with an explicit artifact location, never MLflow's ``./mlruns`` of the
  current folder. A remote tracking server (http, https, databricks) keeps its own.

One process at a time: callers hold the workspace lock (``pipeline.project.lock``) around changes.
MLflow is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from pipeline.files import write_text_atomic
from pipeline.project.databases import masked
from pipeline.registry.mlflow_store import (
    REMOTE_SCHEMES,
    CheckpointMissing,
    RegistryError,
    default_tracking_uri,
    local_folder,
    probe_database,
    probe_server,
    probe_sqlite,
    require_folder,
    sqlite_path,
)
from pipeline.registry.promotion_log import (
    PromotionEvent,
    append_event,
    champion_stack,
    read_events,
)

# Re-exported: callers import these from the registry.
__all__ = ["CHAMPION", "ModelRegistry", "PromotionEvent", "RegistryError", "VersionInfo",
           "default_tracking_uri"]

CHAMPION = "champion"
HISTORY_NAME = "registry-history.jsonl"
POINTER_NAME = "champion.json"
_CHECKPOINT_DIR = "checkpoint"
_MAX_TAG = 5000  # MLflow's limit on a model version tag value
_QUIET = ("mlflow", "alembic")
_DB_LOGGER = "mlflow.store.db.utils"


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, with what its training run logged."""

    version: str
    created: datetime
    snapshot: str | None
    round_id: int | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    aliases: tuple[str, ...]
    run_id: str | None
    source: str  # URI of the artifact folder holding the checkpoint
    checkpoint_file: str | None

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


class ModelRegistry:
    """Versions, champion and promotion history of one project's model, kept in MLflow.

    ``state_dir`` holds the promotion log and downloaded checkpoints; default: the folder
    holding ``artifact_dir`` (the workspace).
    """

    def __init__(self, tracking_uri: str, model_name: str, *, artifact_dir: str | Path,
                 state_dir: str | Path | None = None):
        if not tracking_uri.strip():
            raise RegistryError("empty tracking URI; set registry.tracking_uri in labelloop.toml "
                                "or leave it out for the workspace's SQLite store")
        if not model_name.strip():
            raise RegistryError("empty model name; set project.name in labelloop.toml")
        if "'" in model_name and '"' in model_name:
            raise RegistryError(f"model name {model_name!r} holds both ' and \"; MLflow "
                                "searches cannot quote it. Rename project.name in labelloop.toml")
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.artifact_dir = Path(artifact_dir).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else self.artifact_dir.parent
        self.history_path = self.state_dir / HISTORY_NAME
        self.pointer_path = self.state_dir / POINTER_NAME
        self.cache_dir = self.state_dir / "model-cache"
        self._client_obj = None

    # ---- health ------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast with ``RegistryError`` if the store is unreachable, locked or corrupt.

        Reads only (a new SQLite store gets MLflow's schema, about a second). SQLite is probed
        directly with a short timeout; a remote server gets a TCP connect before any MLflow call.
        """
        scheme = urllib.parse.urlparse(self.tracking_uri).scheme
        if scheme == "sqlite":
            probe_sqlite(sqlite_path(self.tracking_uri))
        elif scheme in ("http", "https"):
            probe_server(self.tracking_uri)
        with self._call("checking the registry"):
            client = self._client()
            experiment = client.get_experiment_by_name(self.model_name)
            if experiment is not None and experiment.lifecycle_stage == "deleted":
                raise RegistryError(_deleted_experiment(experiment))
            client.search_registered_models(max_results=1)

    # ---- versions ----------------------------------------------------------------------
    def register(
        self,
        checkpoint_path: str | Path,
        *,
        params: Mapping,
        metrics: Mapping,
        snapshot: str,
        round_id: int | None = None,
        tags: Mapping | None = None,
    ) -> str:
        """Log and register a checkpoint trained on label ``snapshot``; returns its version.

        If a version of this snapshot exists, it is returned and nothing is logged.
        """
        path = Path(checkpoint_path)
        if not path.is_file():
            raise RegistryError(f"checkpoint not found: {path}; save the model before "
                                "registering it")
        if not snapshot or not all(c.isalnum() or c in "_-.:" for c in snapshot):
            raise RegistryError(f"snapshot {snapshot!r} must be a non-empty hash "
                                "(letters, digits, _ - . :)")
        values = _metric_values(metrics)
        extra = {str(k): str(v) for k, v in (tags or {}).items()}
        with self._call(f"registering snapshot {snapshot}"):
            client = self._client()
            found = self._search_versions(client, f"tags.snapshot = '{snapshot}'")
            if found:
                return str(min(int(mv.version) for mv in found))
            run = self._finished_run(client, snapshot) or self._log_run(
                client, path, params, values, snapshot, round_id, extra)
            self._ensure_model(client)
            version_tags = {**extra, "snapshot": snapshot,
                            "checkpoint_file": run.data.tags["checkpoint_file"]}
            if round_id is not None:
                version_tags["round"] = str(round_id)
            mv = client.create_model_version(
                self.model_name, source=f"{run.info.artifact_uri}/{_CHECKPOINT_DIR}",
                run_id=run.info.run_id, tags=version_tags)
            return str(mv.version)

    def versions(self) -> list[VersionInfo]:
        """Every version of the model, oldest first."""
        with self._call("listing model versions"):
            client = self._client()
            aliases = self._aliases(client)
            if aliases is None:
                return []
            found = self._search_versions(client, None)
            return sorted((self._info(client, mv, aliases) for mv in found),
                          key=lambda v: int(v.version))

    def version(self, version: str) -> VersionInfo:
        """One version; an unknown one raises ``RegistryError`` listing the valid ones."""
        with self._call(f"reading version {version}"):
            client = self._client()
            return self._require(client, version)

    def champion(self) -> VersionInfo | None:
        """The version holding the ``champion`` alias, or None before the first promotion."""
        with self._call("reading the champion"):
            client = self._client()
            aliases = self._aliases(client)
            info = None
            if aliases and CHAMPION in aliases:
                mv = client.get_model_version(self.model_name, aliases[CHAMPION])
                info = self._info(client, mv, aliases)
        self._write_pointer(info)
        return info

    def cached_champion(self) -> dict | None:
        """The champion as the last read of the registry left it (``champion.json`` beside
        the promotion log: ``{"version", "metrics"}``, version None before any), without
        opening MLflow; None if no read has written it yet (then ask ``champion``). Every
        round reads the champion, so the pointer is at most one promotion behind a process
        killed between moving the alias and writing it."""
        try:
            return json.loads(self.pointer_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # half-written by hand or a full disk: read the registry instead
            return None

    def _write_pointer(self, info: VersionInfo | None) -> None:
        record = {"version": None if info is None else info.version,
                  "metrics": {} if info is None else info.metrics}
        if self.cached_champion() != record and self.state_dir.is_dir():
            write_text_atomic(self.pointer_path, json.dumps(record, sort_keys=True))

    def checkpoint_path(self, version: str) -> Path:
        """A local path to the checkpoint of ``version``, downloaded into the cache if remote."""
        info = self.version(version)
        if info.checkpoint_file is None:
            raise RegistryError(f"version {info.version} has no checkpoint_file tag: it was not "
                                "registered by labelloop; register a checkpoint with register()")
        local = local_folder(info.source)
        if local is not None:
            path = local / info.checkpoint_file
            if not path.is_file():
                raise CheckpointMissing(f"the checkpoint of version {info.version} is missing: "
                                    f"{path}; restore the workspace's artifact folder, or make "
                                    "another version the champion (`labelloop models "
                                    "rollback` or `models promote VERSION`)")
            return path
        cached = self.cache_dir / info.version / info.checkpoint_file
        if not cached.is_file():
            # Download beside the cache entry, then rename: a half download is never used.
            tmp = self.cache_dir / f".{info.version}.partial"
            shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted download
            tmp.mkdir(parents=True)
            with self._call(f"downloading the checkpoint of version {info.version}"):
                got = Path(self._client().download_artifacts(
                    info.run_id, f"{_CHECKPOINT_DIR}/{info.checkpoint_file}", str(tmp)))
            cached.parent.mkdir(parents=True, exist_ok=True)
            got.replace(cached)
            shutil.rmtree(tmp)
        return cached

    # ---- champion ----------------------------------------------------------------------
    def promote(self, version: str, *, reason: str) -> VersionInfo:
        """Make ``version`` the champion, recording ``reason``. Promoting the champion is a
        no-op (nothing recorded), so a re-run after a crash does not log the move twice."""
        reason = _check_reason(reason)
        with self._call(f"promoting version {version}"):
            client = self._client()
            self._finish_logged_move(client)
            target = self._require(client, version)
            current = self._aliases(client) or {}
            if str(current.get(CHAMPION)) == target.version:
                return target
            self._move(client, PromotionEvent(
                _now(), "promote", _opt_str(current.get(CHAMPION)), target.version, reason))
            return self._require(client, target.version)

    def rollback(self, *, reason: str) -> VersionInfo:
        """Give the champion alias back to the champion before the current one."""
        reason = _check_reason(reason)
        with self._call("rolling back the champion"):
            client = self._client()
            self._finish_logged_move(client)
            target = self._require(client, self._previous_champion())
            current = (self._aliases(client) or {}).get(CHAMPION)
            self._move(client, PromotionEvent(
                _now(), "rollback", _opt_str(current), target.version, reason))
            return self._require(client, target.version)

    def previous_champion(self) -> str:
        """The version ``rollback`` would restore (nothing moves). Raises ``RegistryError``
        where there is none."""
        with self._call("reading the champions before this one"):
            self._finish_logged_move(self._client())
            return self._previous_champion()

    def _previous_champion(self) -> str:
        stack = champion_stack(self.history())
        if len(stack) < 2:
            raise RegistryError(
                f"no previous champion to roll back to ({len(stack)} champion(s) in "
                f"{self.history_path}); promote a version instead: "
                "`labelloop models promote VERSION`")
        return stack[-2]

    def history(self) -> list[PromotionEvent]:
        """Every promotion and rollback of this model, oldest first."""
        return [e for model, e in read_events(self.history_path) if model == self.model_name]

    # ---- monitoring --------------------------------------------------------------------
    def log_round(self, round_id: int, metrics: Mapping) -> str:
        """Log a round's metrics to the experiment ``<model_name>-rounds``; returns the run id.

        One run per round: logging the same round again adds to its run.
        """
        from mlflow.entities import Metric

        values = _metric_values(metrics)
        name = f"{self.model_name}-rounds"
        with self._call(f"logging round {round_id}"):
            client = self._client()
            exp_id = self._experiment(client, name, self.artifact_dir / "rounds")
            runs = client.search_runs([exp_id], f"tags.round = '{int(round_id)}'", max_results=1)
            if runs:
                run_id = runs[0].info.run_id
            else:
                run_id = client.create_run(exp_id, run_name=f"round-{round_id}",
                                           tags={"round": str(int(round_id))}).info.run_id
            stamp = _millis()
            client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in values.items()])
            client.set_terminated(run_id, "FINISHED")
            return run_id

    # ---- internals ---------------------------------------------------------------------
    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Quiet MLflow's INFO/WARNING chatter (schema creation, pip hints) and its deprecation
        warnings; turn its failures into ``RegistryError`` naming the store. Its ERROR logs still
        print, but for its database layer's, which repeat as a traceback (about 120 lines a
        try of `labelloop run`) the error the ``RegistryError`` gives in one line; every failure
        propagates."""
        from mlflow.exceptions import MlflowException

        loggers = [logging.getLogger(name) for name in (*_QUIET, _DB_LOGGER)]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(max(lg.level, logging.CRITICAL if lg.name == _DB_LOGGER
                            else logging.ERROR))
        try:
            with warnings.catch_warnings():
                # MLflow's own deprecation notices (e.g. SQLAlchemy's ``noload``) are not ours
                # to act on.
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\.")
                yield
        except (MlflowException, SQLAlchemyError, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RegistryError(f"{action}: the MLflow store at {masked(self.tracking_uri)} "
                                f"failed: "
                                f"{first}") from err
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)

    def _client(self):
        if self._client_obj is None:
            from mlflow.tracking import MlflowClient

            def connect():
                return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

            scheme = urllib.parse.urlparse(self.tracking_uri).scheme
            if scheme == "sqlite":
                # MLflow would create a missing folder, so a mistyped URI would silently
                # start an empty registry.
                db = sqlite_path(self.tracking_uri)
                require_folder(db)
                # MLflow creates and migrates a new SQLite store's tables as it connects; two
                # commands doing that at once (`labelloop status & labelloop models list` on a
                # new project) broke each other's migration. One at a time, under a file lock.
                try:
                    lock = open(db.with_name(db.name + ".init-lock"), "a")  # noqa: SIM115
                except OSError:  # a read-only workspace: nobody can be creating the store
                    client = connect()
                else:
                    with lock:
                        fcntl.flock(lock, fcntl.LOCK_EX)
                        client = connect()
                        client.search_registered_models(max_results=1)  # its registry too
            else:
                # Probed first: MLflow retries a server or database that does not answer for
                # minutes with no word (`labelloop models list` sat silent past 100 s).
                if scheme in ("http", "https"):
                    probe_server(self.tracking_uri)
                elif "://" in self.tracking_uri:
                    probe_database(self.tracking_uri)
                client = connect()
            self._client_obj = client
        return self._client_obj

    def _local_store(self) -> bool:
        return urllib.parse.urlparse(self.tracking_uri).scheme not in REMOTE_SCHEMES

    def _experiment(self, client, name: str, artifact_dir: Path) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = artifact_dir.as_uri() if self._local_store() else None
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            raise RegistryError(_deleted_experiment(experiment))
        return experiment.experiment_id

    def _ensure_model(self, client) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(self.model_name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _aliases(self, client) -> dict | None:
        """alias -> version of the registered model; None if the model is not registered."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(client.get_registered_model(self.model_name).aliases)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _search_versions(self, client, extra_filter: str | None) -> list:
        quote = '"' if "'" in self.model_name else "'"
        query = f"name = {quote}{self.model_name}{quote}"
        if extra_filter:
            query += f" and {extra_filter}"
        found, token = [], None
        while True:
            page = client.search_model_versions(query, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _finished_run(self, client, snapshot: str):
        """A complete run of ``snapshot`` left by a crash before registration, or None.
        Runs still RUNNING died mid-logging and are ignored."""
        experiment = client.get_experiment_by_name(self.model_name)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            f"tags.snapshot = '{snapshot}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"], max_results=20)
        return next((r for r in runs if "checkpoint_file" in r.data.tags), None)

    def _log_run(self, client, path: Path, params: Mapping, metrics: dict[str, float],
                 snapshot: str, round_id: int | None, tags: dict[str, str]):
        from mlflow.entities import Metric, Param

        exp_id = self._experiment(client, self.model_name, self.artifact_dir)
        run_tags = {**tags, "snapshot": snapshot}
        if round_id is not None:
            run_tags["round"] = str(round_id)
        run_id = client.create_run(exp_id, run_name=f"snapshot-{snapshot}",
                                   tags=run_tags).info.run_id
        stamp = _millis()
        items = [Param(str(k), str(v)) for k, v in params.items()]
        # log_batch takes at most 100 params per call.
        for start in range(0, max(1, len(items)), 100):
            client.log_batch(run_id, params=items[start:start + 100],
                             metrics=[] if start else
                             [Metric(k, v, stamp, 0) for k, v in metrics.items()])
        client.log_artifact(run_id, str(path), artifact_path=_CHECKPOINT_DIR)
        # Set last: a FINISHED run with this tag holds a complete checkpoint.
        client.set_tag(run_id, "checkpoint_file", path.name)
        client.set_terminated(run_id, "FINISHED")
        return client.get_run(run_id)

    def _require(self, client, version: str) -> VersionInfo:
        wanted = str(version).strip().removeprefix("v")
        aliases = self._aliases(client)
        found = self._search_versions(client, None) if aliases is not None else []
        by_version = {str(mv.version): mv for mv in found}
        if wanted not in by_version:
            valid = ", ".join(sorted(by_version, key=int)) or "none registered yet"
            raise RegistryError(f"no version {version!r} of model {self.model_name!r}; "
                                f"valid versions: {valid} (see `labelloop models list`)")
        return self._info(client, by_version[wanted], aliases or {})

    def _info(self, client, mv, aliases: Mapping) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        metrics, params = {}, {}
        if mv.run_id:
            try:
                data = client.get_run(mv.run_id).data
                metrics, params = dict(data.metrics), dict(data.params)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        tags = dict(mv.tags or {})
        return VersionInfo(
            version=str(mv.version),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
            snapshot=tags.get("snapshot"),
            round_id=int(tags["round"]) if tags.get("round", "").isdigit() else None,
            metrics=metrics, params=params, tags=tags,
            aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
            run_id=mv.run_id, source=mv.source, checkpoint_file=tags.get("checkpoint_file"))

    def _move(self, client, event: PromotionEvent) -> None:
        append_event(self.history_path, self.model_name, event)
        self._apply(client, event)

    def _apply(self, client, event: PromotionEvent) -> None:
        # Gone before the alias moves: a reader then asks MLflow, never a stale pointer.
        self.pointer_path.unlink(missing_ok=True)
        client.set_model_version_tag(self.model_name, event.to_version, "labelloop.champion",
                                     f"{event}"[:_MAX_TAG])
        client.set_registered_model_alias(self.model_name, CHAMPION, event.to_version)

    def _finish_logged_move(self, client) -> None:
        """Apply the last logged move if the process died between logging and moving."""
        events = self.history()
        if not events:
            return
        last = events[-1]
        current = _opt_str((self._aliases(client) or {}).get(CHAMPION))
        if current != last.to_version and current == last.from_version:
            self._apply(client, last)


# ---- small helpers ----------------------------------------------------------------------
def _deleted_experiment(experiment) -> str:
    return (f"the MLflow experiment {experiment.name!r} is deleted; restore it with `mlflow "
            f"experiments restore --experiment-id {experiment.experiment_id}`, or delete it "
            "for good with `mlflow gc`")


def _metric_values(metrics: Mapping) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RegistryError(f"metric {key!r} is {value!r}; metrics must be numbers "
                                "(log text as params or tags)")
        out[str(key)] = float(value)
    return out


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise RegistryError("a promotion or rollback needs a reason (it is recorded)")
    return reason.strip()


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _millis() -> int:
    return int(_now().timestamp() * 1000)
