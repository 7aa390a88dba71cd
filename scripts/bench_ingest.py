"""Incremental ingest: how long a round's ingest takes when a few files join a large folder.

Writes ``--files`` small distinct PNG files (16x16 RGB noise, in folders of 1,000) and ingests
them once into a fresh label store (every file hashed and decoded), then times, on the same
folder and store:

* unchanged: ingest again with nothing new (what each round of a quiet loop pays);
* new files: ``--new`` files dropped in, then ingest (goal: under 5 s for 100 into 100,000);
* reread: the same folder with the index ignored (``reread=True``, i.e. ``labelloop ingest
  --reread``), every file hashed again: what the round would pay without the index.

Run: ``.venv/bin/python scripts/bench_ingest.py [--files 100000] [--new 100] [--folder DIR
[--reuse-store]]``.
A given ``--folder`` is kept (and its images reused by the next run); the default is a
temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from labeling.store import LabelStore
from pipeline.ingest import ingest_folder


def main() -> None:
    args = _parse_args()
    base = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        _run(base, args.files, args.new, reuse=args.reuse_store)
    finally:
        if not args.folder:
            shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, files: int, new: int, *, reuse: bool) -> None:
    images, db = base / "images", base / "labels.db"
    shutil.rmtree(images / "new", ignore_errors=True)  # the previous run's new files
    if not reuse:
        for stale in base.glob("labels.db*"):
            stale.unlink()
    start = time.perf_counter()
    made = _write_pngs(images, range(files))
    print(f"wrote {made:,} new PNG files ({files:,} wanted) in {time.perf_counter() - start:.1f} s")
    store = LabelStore(db)
    try:
        first = _timed(lambda: ingest_folder(store, images, progress=True))
        print(f"first ingest: {len(first[1].added):,} items in {first[0]:.1f} s")
        rows = [("unchanged (nothing new)", *_timed(lambda: ingest_folder(store, images)))]
        # Bytes no earlier run made (a reused store would know them): read, decoded, grouped.
        _write_pngs(images, range(files, files + new), sub="new", salt=time.time_ns())
        rows.append((f"{new} new files", *_timed(lambda: ingest_folder(store, images))))
        rows.append(("reread (index ignored)",
                     *_timed(lambda: ingest_folder(store, images, reread=True))))
    finally:
        store.close()
    print(f"\n{'ingest of ' + format(files, ',') + ' seen files':<34}{'seconds':>9}{'added':>8}"
          f"{'read':>9}")
    for name, seconds, report in rows:
        read = len(report.already_present) - report.unread + len(report.added)
        print(f"{name:<34}{seconds:>9.2f}{len(report.added):>8,}{read:>9,}")
    print(f"goal: {new} new files into {files:,} seen under 5 s: {rows[1][1]:.2f} s")


def _write_pngs(folder: Path, numbers, *, sub: str = "", salt: int = 0) -> int:
    """Distinct 16x16 noise PNGs named by number, 1,000 per folder; existing files are kept."""
    made = 0
    for n in track(list(numbers), description="writing PNGs", transient=True):
        path = folder / (sub or f"d{n // 1000:04d}") / f"img{n:07d}.png"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([n, salt])
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        made += 1
    return made


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--folder", help="keep images and store here (reused next time)")
    parser.add_argument("--reuse-store", action="store_true",
                        help="keep the store of the last run in --folder (skips most of the "
                        "first ingest's decoding)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
