"""labelloop from Python: a script or a notebook drives rounds as the command line does.

    from pipeline.api import Loop

    with Loop("labelloop.toml") as loop:   # holds the workspace lock, as `labelloop round` does
        loop.start_studio()                # the embedded Label Studio (no-op when it runs)
        record = loop.round()              # one round (it ingests new images first)
        print(loop.status()["pool"])       # what `labelloop status --json` prints
        print(loop.certificate())          # the delivered set's counts and error bound
        loop.export("labels.csv")          # with labels.certificate.json beside it

While the block runs, a `labelloop round`, `run`, `tune`, `studio sync` or `models` command (or
Label Studio's Train button) on the same project is refused or waits, naming this process as
the lock's holder (and a ``Loop`` opened while one of them runs raises ``LockHeld``), so two
processes never run steps of one round at once. Errors are the command line's, raised:
``ConfigError`` (the config), ``LockHeld``, ``StudioError`` (Label Studio down or refusing),
``RegistryError``, ``ComputeError``, ``StoreUnavailable``, ``ExportError``; ``EmptyPool`` when
a round finds no readable image. A round that raised resumes at its next call, in this process
or in the command line. ``loop.project`` is the open ``Project`` for anything else (its store,
config and registry).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.certify import project_certificate
from pipeline.delivery import Delivery, deliver
from pipeline.project.config import ConfigError
from pipeline.project.lock import WorkspaceLock
from pipeline.project.project import Project, open_project
from pipeline.project.workspace import ensure_workspace, find_config


class Loop:
    """One project opened for a ``with`` block (module docstring). ``config``: the
    labelloop.toml or its folder; ``env``: where keys and database URLs are read (default:
    this process's environment)."""

    def __init__(self, config: str | Path = ".", *, env: Mapping[str, str] | None = None):
        self._config = find_config(Path(config))
        self._env = dict(os.environ if env is None else env)
        self._project: Project | None = None
        self._lock: WorkspaceLock | None = None

    def __enter__(self) -> Loop:
        ws = self._config.workspace_dir
        if not ws.is_dir():
            # As the commands that read: a moved or deleted workspace must not be answered
            # from a new, empty one (`labelloop init` or `ingest` makes the first).
            raise ConfigError(f"no workspace at {ws} (labelloop.toml's workspace): it was "
                              "moved or deleted, or the config points elsewhere; `labelloop "
                              "ingest` starts a new, empty one")
        ensure_workspace(self._config)  # its folders, as a round makes them
        lock = WorkspaceLock(self._config.workspace_dir / "lock",
                             command="a Python script (pipeline.api.Loop)")
        lock.acquire()
        try:
            self._project = open_project(self._config, env=self._env)
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._project is not None:
                self._project.close()
        finally:
            self._project = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    @property
    def project(self) -> Project:
        if self._project is None:
            raise RuntimeError("the project is open only inside `with Loop(...) as loop:`")
        return self._project

    def start_studio(self) -> dict:
        """Start the embedded Label Studio unless it runs (a project with ``[studio] url``
        set uses that server: nothing to start); its URL and where the admin's files are."""
        from pipeline.round.session import ensure_embedded_server  # noqa: PLC0415 - SDK

        if self.project.config.studio.url:
            return {"url": self.project.config.studio.url}
        return ensure_embedded_server(self.project)

    def round(self, *, progress: bool = False,
              should_stop: Callable[[], bool] = lambda: False) -> dict:
        """Run one round, or finish an interrupted one; its record ``{"id", "stats"}``.
        ``should_stop`` is asked between steps; when it says yes the round stops there
        (``RoundStopped``) and resumes at the next call."""
        # Imported here: torch and the Label Studio SDK take seconds to load.
        from pipeline.round.steps import run_round  # noqa: PLC0415

        return run_round(self.project, progress=progress, should_stop=should_stop)

    def status(self) -> dict:
        """The pool by state, the champion, the certificate and the rounds (as JSON)."""
        from pipeline.status import project_status  # noqa: PLC0415 - reads the registry

        return project_status(self.project)

    def certificate(self) -> dict:
        """The delivered set as it stands: counts by source and the bound on wrong labels."""
        return project_certificate(self.project)

    def export(self, out: str | Path, *, format: str = "csv", human_only: bool = False,
               force: bool = False) -> Delivery:
        """Write the labels (``labelloop export``'s formats) and their certificate beside
        them; what was written, left out and certified."""
        return deliver(self.project.store, self.project.config, out, format=format,
                       human_only=human_only, force=force)
