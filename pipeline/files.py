"""Writing workspace files so that a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, flush it to disk, then rename it over."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished export ``tmp`` to ``out``, replacing a previous export there."""
    if out.exists() and any(out.iterdir()):
        # _check_target allowed this: a previous export, replaced by --force. rename(2)
        # cannot replace a non-empty folder, so the old one steps aside first.
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        try:
            tmp.replace(out)
        except OSError:
            old.rename(out)
            raise
        shutil.rmtree(old)
    else:
        tmp.replace(out)


def write_file_atomic(out: Path, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``out``, then rename it over."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
