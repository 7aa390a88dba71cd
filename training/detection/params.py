"""Detector training settings, parsed once into a frozen object and passed down."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from training.params import from_known_fields, refuse_failed


@dataclass(frozen=True)
class DetectParams:
    """How to train a detector.

    ``model`` names a detector in ``training.detection.models``; ``weights`` is ``"imagenet"``
    (torchvision's ImageNet MobileNetV2 backbone, from torch's hub cache) or None (random init).
    ``image_size`` None keeps every image at its own size (the small images this is meant for
    would only get slower if scaled up), but a side over ``models.MAX_SIDE`` (1,024) px is
    scaled down to it; an int scales the shorter side to it. ``epochs`` passes
    over the data, at least ``min_steps`` optimiser steps in all, under a one-cycle schedule that
    peaks at ``lr``. ``augment`` (0..1) is the chance that a training image is shifted on its
    canvas (boxes moved with it).
    """

    model: str = "fcos_mobilenet_v2_stride4"
    weights: str | None = "imagenet"
    image_size: int | None = None
    epochs: int = 15
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 1e-4
    augment: float = 0.5
    # A detector learns from steps more than from epochs: on 100 mnist-detection canvases
    # (15 epochs of batch 16), 105 steps gave mAP@0.5 0.33 on the 500 test canvases and 300
    # steps 0.83 (19 s against 86 s on two cores). The first rounds have that few labels.
    min_steps: int = 300
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "weights": self.weights in ("imagenet", None),
            "image_size": self.image_size is None or self.image_size >= 32,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "augment": 0 <= self.augment <= 1,
            "min_steps": self.min_steps >= 0,
        }
        refuse_failed(self, checks, "detector", (
            "weights 'imagenet' or None, image_size None or >= 32, epochs >= 1, batch_size "
            ">= 1, lr > 0, weight_decay >= 0, 0 <= augment <= 1, min_steps >= 0"))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, for checkpoints and experiment trackers."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectParams:
        """Inverse of ``to_dict``; missing keys take defaults, unknown keys raise ``ValueError``."""
        return from_known_fields(cls, d, "detector")
