"""Decoded pixels kept on disk, so that predicting the pool again does not decode it again.

Every round predicts the whole pool with a new champion. For a small model, decoding the image
files costs a third as much CPU as the forward pass itself, and on a two-core machine the two
compete (``scripts/bench_predict.py``: 0.64x the bare forward pass from PNG files). So the predict
step decodes each item once, at the model's input size, and keeps it as uint8 in an
``EmbeddingCache`` keyed by item key (a content hash: an item's pixels never change) and by
channels and size; later rounds read the pixels from there, bit for bit what decoding gives.

Ingest decodes every new image anyway, to check it; given a ``PixelKeeper`` it keeps the pixels
then (``pipeline.ingest``), so even the first prediction of a new item reads them from here.

Only inputs up to ``MAX_ITEM_BYTES`` are kept: a 224 px RGB input is 150 KB per item (150 GB
for a million), and its decoding is a small share of a large model's forward pass anyway.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import TransformConfig, load_arrays, to_model_pixels
from training.embedding_cache import EmbeddingCache
from training.predict import Predictions, predict, predict_arrays
from training.trained import TrainedModel

MAX_ITEM_BYTES = 16 * 1024  # 64 x 64 RGB fits; MNIST's 28 x 28 grey is 784 bytes
# Decoded and written in chunks: a file that fails to decode late keeps the work before it.
CHUNK = 10_000


def pixel_cache(root: Path, tconf: TransformConfig) -> EmbeddingCache | None:
    """The cache of ``tconf``'s pixels under ``root`` (None: not kept for this input size)."""
    if tconf.channels * tconf.image_size**2 > MAX_ITEM_BYTES:
        return None
    return EmbeddingCache(Path(root) / f"{tconf.channels}x{tconf.image_size}", dtype=np.uint8)


@dataclass(frozen=True)
class PixelKeeper:
    """Where a reader that decodes images anyway (ingest) puts their pixels for ``tconf``."""

    tconf: TransformConfig
    cache: EmbeddingCache

    @property
    def channels(self) -> int:
        """Open images with this many channels: the prediction path does, and the pixels
        must be what it would decode, bit for bit."""
        return self.tconf.channels

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One opened image's pixels [S * S * C], as the cache keeps them."""
        return to_model_pixels(image, self.tconf).reshape(-1)


def pixel_keeper(root: Path, tconf: TransformConfig) -> PixelKeeper | None:
    """A keeper of ``tconf``'s pixels under ``root`` (None: not kept for this input size)."""
    cache = pixel_cache(root, tconf)
    return None if cache is None else PixelKeeper(tconf, cache)


def predict_cached_pixels(
    model: TrainedModel,
    paths: Sequence[str | Path],
    keys: Sequence[str],
    cache: EmbeddingCache,
    *,
    embeddings: bool = False,
    progress: bool = False,
    num_workers: int = 2,
) -> Predictions:
    """``predict`` for the files ``paths`` (item ``keys``), their pixels read from ``cache``;
    the ones it lacks are decoded first and added. Raises ``ImageError`` naming a file that
    cannot be read (the chunks decoded before it stay cached)."""
    if len(paths) != len(keys):
        raise ValueError(f"{len(paths)} paths for {len(keys)} keys")
    tconf = model.transform
    where = dict(zip(keys, paths, strict=True))
    todo = cache.missing(keys)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        pixels = load_arrays([where[k] for k in chunk], tconf, num_workers=num_workers,
                             progress=progress)
        try:
            cache.add(chunk, pixels.reshape(len(chunk), -1))
        except OSError as err:
            # The cache only spares later rounds a decode; a full disk or a read-only
            # workspace must not stop this prediction.
            warnings.warn(f"pixel cache {cache.folder} not written ({err.strerror or err}); "
                          "predicting from the image files", stacklevel=2)
            return predict(model, paths, num_workers=num_workers, embeddings=embeddings,
                           progress=progress)
    size = tconf.image_size
    pixels = cache.get(list(keys)).reshape(len(keys), size, size, tconf.channels)
    return predict_arrays(model, pixels, embeddings=embeddings, progress=progress)
