"""The result of detector training: everything needed to predict with it or train on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from training.detection.params import DetectParams


@dataclass
class TrainedDetector:
    """A trained detector and what it was trained with.

    ``module`` is the torchvision detector (``training.detection.models``) over ``classes``;
    ``optimizer_state`` and ``epoch`` let training continue (``train_detector(...,
    warm_start=...)``). ``metrics`` holds plain values only (seconds, steps, losses, seed).
    """

    module: nn.Module
    classes: tuple[str, ...]
    params: DetectParams
    metrics: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
