"""``labelloop serve``: the champion as a Label Studio model backend ("Connect model").

Runs in the foreground until SIGINT/SIGTERM, bound to 127.0.0.1 unless ``--host`` says
otherwise. It takes no workspace lock: it reads the registry and the store, and the rounds
that its Train button starts are child processes that take the lock like any round.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from labeling.studio.errors import StudioError
from pipeline.cli.common import ConfigOption, console, fail, load
from pipeline.project.workspace import config_file
from pipeline.registry.mlflow_store import RegistryError


def serve_command(
    config: Path | None = ConfigOption,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int | None = typer.Option(None, help="Port (default: \\[studio] backend_port, 9090)."),
) -> None:
    """Serve the champion to Label Studio: predictions for any task, the Train button."""
    import uvicorn

    from pipeline.backend.app import make_app
    from pipeline.backend.setup import open_backend
    from pipeline.project.project import open_project
    from training.checkpoint import CheckpointError  # torch: every command paid for it

    cfg = load(config)
    project = open_project(cfg, env=os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request's URL at INFO: a task's image URL may hold a password or a
    # presigned signature (our own lines show them masked).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        backend = open_backend(project, config_file(config))
        loaded = backend.champion.current()
    except (StudioError, RegistryError) as err:
        project.close()
        fail(f"cannot serve: {err}")
    except CheckpointError as err:
        project.close()
        fail(f"cannot serve: {err}; `labelloop models rollback` (or `models promote VERSION`) "
             "makes another version the champion")
    port = port or cfg.studio.backend_port
    served = "no champion yet (predictions start after the first promotion)" if loaded is None \
        else f"champion {loaded.model_version}"
    console.print(f"serving {served} for Label Studio project {backend.studio_project_id} at "
                  f"http://{host}:{port}; connect it with `labelloop studio connect`",
                  highlight=False)
    try:
        uvicorn.run(make_app(backend), host=host, port=port, log_level="warning")
    finally:
        project.close()
