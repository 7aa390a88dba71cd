"""Embeddings kept on disk, per backbone: computed once per item, appended as items arrive.
(The same store keeps decoded pixels, uint8, for the predict step: ``training.pixels``.)

One folder per backbone identity (``probe.backbone_id``: model, weights, input size), so a
changed backbone never reads another's vectors. Each write is a new chunk file
(``chunk-<time>-<pid>.npz`` holding item keys and float32 vectors) written to a temporary name and
renamed into place: a kill mid-write leaves a stray ``.tmp`` file that readers ignore, and
every chunk that is there is whole. A key written twice (two processes racing) keeps the vector
of the later chunk; both are the same backbone's output for the same image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """The embeddings of one backbone in ``folder``, kept as ``dtype``."""

    def __init__(self, folder: str | Path, *, dtype: type = np.float32) -> None:
        self.folder = Path(folder)
        self.dtype = dtype
        self._vectors: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            for chunk in sorted(self.folder.glob("chunk-*.npz"), key=_chunk_number):
                with np.load(chunk) as data:
                    self._vectors.update(zip(data["keys"].tolist(), data["vectors"],
                                             strict=True))
        return self._vectors

    def __len__(self) -> int:
        return len(self._load())

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys among ``keys`` without a vector yet, in order, once each."""
        have = self._load()
        return list(dict.fromkeys(k for k in keys if k not in have))

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """[N, D] vectors of ``keys``; KeyError naming the first key without one."""
        have = self._load()
        gone = [k for k in keys if k not in have]
        if gone:
            raise KeyError(f"no cached embedding for {gone[0]} ({len(gone)} missing)")
        return np.stack([have[k] for k in keys]) if keys else np.zeros((0, 0), self.dtype)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Append ``vectors`` [N, D] for ``keys`` as one new chunk."""
        vectors = np.array(vectors, dtype=self.dtype)  # a copy: the caller may reuse its array
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Named by time and process: two writers never take each other's name.
        name = f"chunk-{time.time_ns()}-{os.getpid()}"
        final, tmp = self.folder / f"{name}.npz", self.folder / f"{name}.tmp"
        try:
            with tmp.open("wb") as handle:
                np.savez(handle, keys=np.array(list(keys)), vectors=vectors)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError:
            # A full disk leaves half a chunk behind; it is never read, but it takes space.
            tmp.unlink(missing_ok=True)
            raise
        # Not loaded yet: the chunk is read with the others on first use. Ingest appends a
        # few items a round to a cache that may hold a million; it must not read them all.
        if self._vectors is not None:
            self._vectors.update(zip(keys, vectors, strict=True))


def _chunk_number(path: Path) -> int:
    return int(path.name.split("-")[1].split(".")[0])
