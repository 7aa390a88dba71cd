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
    """``write(tmp_path)`` into a temporary file beside ``out``, then rename it over. The file
    gets the permissions a plain new file gets (the umask's), not mkstemp's owner-only 0600: an
    export is for teammates and containers to read."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def temp_folder_beside(out: Path) -> Path:
    """A new empty folder beside ``out``, to be renamed to it when complete, with the
    permissions a plain new folder gets (the umask's), not mkdtemp's owner-only 0700."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it, even
    for a moment, would change the files other threads create meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
