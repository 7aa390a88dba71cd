"""What every command shares: the ``--config`` option, the consoles, the error exit, and the
project opened (and locked) for the length of a command. Only ``pipeline.cli`` imports this."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from labeling.store import StoreError, StoreUnavailable
from labeling.studio.errors import StudioError
from pipeline.compute.errors import ComputeError
from pipeline.project.config import Config, ConfigError
from pipeline.project.databases import DatabaseError
from pipeline.project.lock import LockHeld, WorkspaceLock
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.registry.mlflow_store import RegistryError
from training.errors import WeightsError, WeightsUnavailableError

# soft_wrap: rich would break a long message at 80 columns when stderr is not a terminal, and an
# error (the lock holder, a Label Studio failure) must stay one line that logs and grep can read.
console = Console(stderr=True, soft_wrap=True)
out = Console()

CONFIG_HELP = "labelloop.toml (default: ./labelloop.toml, or the nearest one in a folder above)"
ConfigOption = typer.Option(None, "--config", "-c", help=CONFIG_HELP)


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit with ``code``."""
    # The message is plain text: it may hold [section] names that rich would eat as markup.
    console.print("[red]error:[/red] " + escape(message), highlight=False)
    raise typer.Exit(code)


def load(config_path: Path | None) -> Config:
    """The project's config, or one error line and exit 2."""
    try:
        return find_config(config_path)
    except ConfigError as err:
        fail(str(err))
    raise AssertionError("unreachable")


def need_workspace(config: Config) -> None:
    """One error line and exit 2 where the workspace is gone: a command that only reads must
    not answer from a new, empty one (a deleted or moved folder read as "nothing labeled")."""
    ws = config.workspace_dir
    if not ws.is_dir():
        fail(f"no workspace at {ws} (labelloop.toml's workspace): it was moved or deleted, or "
             "the config points elsewhere; `labelloop ingest` starts a new, empty one")


@contextmanager
def opened(config_path: Path | None, *, lock: str | None = None, reads: bool = False):
    """Open the project; with ``lock``, hold the workspace lock as that command. ``reads``:
    the command only reads, and refuses a workspace that is not there."""
    config = load(config_path)
    if reads:
        need_workspace(config)
    try:
        project = open_project(config, env=os.environ)
    except (DatabaseError, StoreError) as err:
        fail(str(err))
    try:
        if lock is None:
            yield project
        else:
            with WorkspaceLock(config.workspace_dir / "lock", command=lock):
                yield project
    except LockHeld as err:
        fail(str(err), code=3)
    except RegistryError as err:
        fail(f"model registry: {err}")
    except StudioError as err:
        fail(f"Label Studio: {err}; the next round resumes where this one stopped")
    except ComputeError as err:
        fail(f"compute: {err}")
    except StoreUnavailable as err:
        fail(f"{err}; run the command again once the store answers (a round resumes where it "
             "stopped)")
    except (WeightsError, WeightsUnavailableError) as err:
        fail(f"[training] weights: {err}")
    finally:
        project.close()
