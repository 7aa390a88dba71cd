"""The result of training: everything needed to predict with a model, calibrate it, or resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.data import TransformConfig
from training.models import FeatureClassifier
from training.params import TrainParams


@dataclass
class TrainedModel:
    """A trained classifier and what it was trained with.

    ``module`` maps normalised ``[N, C, S, S]`` batches to logits over ``classes``; ``transform``
    says how to get those batches from images. ``temperature`` divides the logits before softmax
    (1.0 until ``calibrate`` fits it). ``optimizer_state`` and ``epoch`` let training continue
    (``train(..., warm_start=model)``). ``metrics`` holds plain values only.
    """

    module: FeatureClassifier
    classes: tuple[str, ...]
    transform: TransformConfig
    params: TrainParams
    metrics: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
