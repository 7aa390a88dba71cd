"""Temperature scaling (Guo et al. 2017): one scalar T divides the logits so that confidence
matches accuracy on held-out data, without changing any prediction's top class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.evaluate import expected_calibration_error
from training.labels import check_label_idx, check_same_length, encode_labels
from training.predict import predict, predict_arrays
from training.trained import TrainedModel

T_BOUNDS = (0.05, 20.0)


def fit_temperature(
    logits: np.ndarray,
    label_idx: np.ndarray,
    *,
    bounds: tuple[float, float] = T_BOUNDS,
    max_iter: int = 100,
) -> float:
    """The temperature T in ``bounds`` minimising the NLL of ``softmax(logits / T)``.

    ``logits`` [N, K] are uncalibrated (temperature 1). Optimised with L-BFGS over log T, which
    a sigmoid keeps inside ``bounds``; T = 1 is returned if fitting does not lower the NLL.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"logits must be a non-empty [N, K] array, got shape {tuple(z.shape)}")
    y = torch.from_numpy(check_label_idx(label_idx, z.shape[1]))
    check_same_length(len(z), len(y), "rows of logits")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    if not lo < 0 < hi:
        raise ValueError(f"bounds must satisfy lo < 1 < hi, got {bounds}")

    def log_t(u: torch.Tensor) -> torch.Tensor:
        return lo + (hi - lo) * torch.sigmoid(u)

    def nll(t_log: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z / t_log.exp(), y)

    # Start at T = 1: sigmoid(u0) places log T at 0.
    u = torch.tensor([math.log(-lo / hi)], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([u], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll(log_t(u))
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        fitted = log_t(u)
        if not nll(fitted) < nll(torch.zeros(1, dtype=torch.float64)):
            return 1.0
        return float(fitted.exp())


def calibrate(
    model: TrainedModel,
    paths: Sequence[str | Path],
    labels: Sequence[str],
    *,
    batch_size: int = 256,
    num_workers: int = 2,
) -> float:
    """Fit ``model.temperature`` on held-out image files with class-name ``labels``; return it.

    Use items the model was not trained or early-stopped on. Before/after NLL and ECE are
    recorded in ``model.metrics["calibration"]``.
    """
    check_same_length(len(paths), len(labels), "paths")
    label_idx = encode_labels(labels, model.classes)
    preds = predict(model, paths, batch_size=batch_size, num_workers=num_workers)
    return _set_temperature(model, preds.logits, label_idx)


def calibrate_logits(model: TrainedModel, logits: np.ndarray, labels: Sequence[str]) -> float:
    """As ``calibrate``, for held-out items the model has already predicted (``logits`` at
    temperature 1, e.g. read through a cache)."""
    label_idx = encode_labels(labels, model.classes)
    check_same_length(len(logits), len(label_idx), "rows of logits")
    return _set_temperature(model, logits, label_idx)


def calibrate_arrays(
    model: TrainedModel,
    images: np.ndarray,
    label_idx: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 256,
) -> float:
    """As ``calibrate``, for preloaded uint8 images and integer class indices."""
    label_idx = check_label_idx(label_idx, len(model.classes))
    check_same_length(len(images), len(label_idx))
    preds = predict_arrays(model, images, batch_size=batch_size)
    return _set_temperature(model, preds.logits, label_idx)


def _set_temperature(model: TrainedModel, raw: np.ndarray, label_idx: np.ndarray) -> float:
    temperature = fit_temperature(raw, label_idx)
    logits = torch.from_numpy(raw).double()
    y = torch.from_numpy(label_idx)

    def scores(t: float) -> dict[str, float]:
        probs = torch.softmax(logits / t, dim=1)
        return {
            "nll": round(float(F.nll_loss(probs.clamp_min(1e-12).log(), y)), 5),
            "ece": round(expected_calibration_error(probs.numpy(), label_idx), 5),
        }

    model.temperature = temperature
    model.metrics["calibration"] = {
        "n": len(label_idx),
        "temperature": temperature,
        "before": scores(1.0),
        "after": scores(temperature),
    }
    return temperature
