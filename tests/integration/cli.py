"""Running the real `labelloop` command from integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LABELLOOP = str(Path(sys.executable).with_name("labelloop"))


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's own Label Studio settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    return {**env, **extra}


def labelloop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``labelloop *args`` from the repository root; output captured as text."""
    return subprocess.run([LABELLOOP, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
