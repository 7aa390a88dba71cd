"""Training settings, parsed once into a frozen object and passed down."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MODES = ("finetune", "probe")


@dataclass(frozen=True)
class TrainParams:
    """How to train a model.

    ``image_size`` None means the model's default. ``augment`` (0..1) scales the random affine
    applied to training batches. ``val_fraction`` of the labels is held out (stratified) for early
    stopping when that leaves enough to judge by; ``patience`` is the number of validation checks
    without improvement before stopping. By default nothing is held out: on MNIST with 200 to
    2,000 labels, the whole one-cycle schedule on every label beat early stopping on a 15% split
    at every size, and varied less from seed to seed (docs/benchmarks.md, "Training recipe"):
    the split
    costs labels, and its best checkpoint, judged on a few dozen items, is a noisy choice that
    often lands before the learning rate has come down. ``epochs`` bounds the passes over the
    data, but at least ``min_steps`` optimiser steps are taken so a few dozen labels still
    train properly.
    ``num_workers`` processes decode image files.
    """

    model: str = "small_cnn"
    weights: str | None = None
    # finetune: train the whole network on images. probe: keep the (pretrained) backbone
    # frozen and train a logistic-regression head on its cached embeddings (training.probe).
    mode: str = "finetune"
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    augment: float = 0.5
    val_fraction: float = 0.0
    patience: int = 5
    min_steps: int = 200
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "augment": 0 <= self.augment <= 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "patience": self.patience >= 1,
            "min_steps": self.min_steps >= 0,
            "num_workers": self.num_workers >= 0,
            "image_size": self.image_size is None or self.image_size >= 8,
            "mode": self.mode in MODES,
        }
        refuse_failed(self, checks, "training", (
            f"epochs >= 1, batch_size >= 2, lr > 0, weight_decay >= 0, 0 <= augment <= 1, "
            f"0 <= val_fraction < 1, patience >= 1, min_steps >= 0, num_workers >= 0, "
            f"image_size None or >= 8, mode one of {', '.join(MODES)}"))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, for checkpoints, JSON and experiment trackers."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainParams:
        """Inverse of ``to_dict``; missing keys take defaults, unknown keys raise ``ValueError``."""
        return from_known_fields(cls, d, "training")


def refuse_failed(params, checks: dict[str, bool], what: str, needs: str) -> None:
    """Raise ``ValueError`` naming every field of ``params`` whose check failed, and what
    each needs (``what``: "training", "detector")."""
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        values = ", ".join(f"{name}={getattr(params, name)!r}" for name in bad)
        raise ValueError(f"invalid {what} parameters: {values} (need {needs})")


def from_known_fields(cls, d: dict[str, Any], what: str):
    """``cls(**d)``; missing keys take defaults, unknown keys raise ``ValueError``."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise ValueError(f"unknown {what} parameters {unknown}; valid: {', '.join(sorted(valid))}")
    return cls(**d)
