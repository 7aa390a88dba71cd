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


# In a folder export: the files it wrote, one relative path a line. A later export with
# --force replaces only a folder that holds nothing else (a file someone added inside was
# deleted with it, without a word).
EXPORT_MANIFEST = ".labelloop-files"


def added_files(folder: Path) -> list[str] | None:
    """The files in the earlier export ``folder`` that it did not write, sorted; None when it
    keeps no list of its files (an export from before the list)."""
    try:
        written = set((folder / EXPORT_MANIFEST).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return None
    return sorted(name for name in _files(folder)
                  if name not in written and name != EXPORT_MANIFEST)


def _files(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() or p.is_symlink()]


def replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished export ``tmp`` to ``out``, replacing a previous export there; the
    export lists its files (``EXPORT_MANIFEST``)."""
    (tmp / EXPORT_MANIFEST).write_text("".join(f"{name}\n" for name in sorted(_files(tmp))),
                                       encoding="utf-8")
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
