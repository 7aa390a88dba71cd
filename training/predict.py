"""Batch prediction: class probabilities (and optionally embeddings) for many images.

``predict`` is a plain function over a list of paths so that a distributed engine can later
split the list and call it per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training._progress import progress_bar
from training.data import ArrayDataset, iter_file_batches, normalize
from training.trained import TrainedModel


@dataclass(frozen=True)
class Predictions:
    """``probs`` [N, K] (softmax of logits / temperature), ``logits`` [N, K] (before
    temperature), ``embeddings`` [N, D] or None; all float32, rows in input order."""

    probs: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray | None


def predict(
    model: TrainedModel,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 256,
    num_workers: int = 2,
    embeddings: bool = False,
    progress: bool = False,
) -> Predictions:
    """Predict the image files ``paths``, decoded by ``num_workers`` processes.

    Raises ``ImageError`` naming the first file that cannot be read.
    """
    device = _device_of(model)
    batches = iter_file_batches(
        paths,
        model.transform,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        progress=progress,
        description="predicting",
    )
    return _predict_batches(model, batches, len(paths), embeddings=embeddings)


def predict_arrays(
    model: TrainedModel,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    embeddings: bool = False,
    progress: bool = False,
) -> Predictions:
    """Predict preloaded uint8 images ``[N, H, W]`` or ``[N, H, W, C]``."""
    pixels = ArrayDataset(images, model.transform).images
    n = len(pixels)

    def batches() -> Iterable[torch.Tensor]:
        with progress_bar(progress, "predicting", n) as bar:
            for start in range(0, n, batch_size):
                batch = pixels[start : start + batch_size]
                bar.advance(len(batch))
                yield batch

    return _predict_batches(model, batches(), n, embeddings=embeddings)


def _device_of(model: TrainedModel) -> torch.device:
    return next(model.module.parameters()).device


def _predict_batches(
    model: TrainedModel,
    batches: Iterable[torch.Tensor],  # uint8 [B, C, S, S]
    n: int,
    *,
    embeddings: bool,
) -> Predictions:
    module = model.module
    device = _device_of(model)
    k = module.num_classes
    logits = np.empty((n, k), dtype=np.float32)
    feats = np.empty((n, module.embedding_dim), dtype=np.float32) if embeddings else None
    # Same memory format as in training: conv results then match bit for bit across
    # a trained model and one loaded from its checkpoint.
    module.eval().to(memory_format=torch.channels_last)
    start = 0
    with torch.inference_mode():
        for batch in batches:
            x = normalize(batch.to(device, non_blocking=True), model.transform)
            x = x.contiguous(memory_format=torch.channels_last)
            emb = module.features(x)  # [B, D]
            end = start + len(batch)
            logits[start:end] = module.head(emb).float().cpu().numpy()
            if feats is not None:
                feats[start:end] = emb.float().cpu().numpy()
            start = end
    return Predictions(probs=probabilities(logits, model.temperature), logits=logits,
                       embeddings=feats)


def probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """float32 ``softmax(logits / temperature)``, row by row."""
    return torch.softmax(torch.from_numpy(logits) / temperature, dim=1).numpy()
