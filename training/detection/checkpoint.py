"""Save and load a ``TrainedDetector`` as one file of plain data (loads with
``weights_only=True``), written atomically by the same code as classifier checkpoints."""

from __future__ import annotations

from pathlib import Path

from training.checkpoint import (
    CheckpointError,
    plain,
    read_checkpoint_file,
    write_checkpoint_file,
)
from training.detection.models import get_detector
from training.detection.params import DetectParams
from training.detection.trained import TrainedDetector

__all__ = ["CheckpointError", "load_detector", "save_detector"]

FORMAT = "labelloop.detector"
VERSION = 1
_REQUIRED = ("format", "version", "classes", "params", "metrics", "epoch", "state_dict",
             "optimizer_state")


def save_detector(model: TrainedDetector, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename): on any failure
    ``path`` is left as it was. Raises ``CheckpointError`` naming ``path``."""
    path = Path(path)
    contents = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(model.classes),
        "params": plain(model.params.to_dict(), "params", path),
        "metrics": plain(model.metrics, "metrics", path),
        "epoch": int(model.epoch),
        "state_dict": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "optimizer_state": model.optimizer_state,
    }
    write_checkpoint_file(contents, path)


def load_detector(path: str | Path, *, device: str = "cpu") -> TrainedDetector:
    """Read a detector written by ``save_detector`` onto ``device``, ready to predict or to
    warm-start training. Raises ``CheckpointError`` naming ``path`` if it is missing, corrupt,
    another kind of checkpoint or does not fit its detector."""
    path = Path(path)
    data = read_checkpoint_file(path, FORMAT, VERSION, _REQUIRED, device=device)
    classes = tuple(data["classes"])
    try:
        params = DetectParams.from_dict(data["params"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} has unusable parameters: {err}") from err
    # The weights come from the file: build without ImageNet's, so no hub cache is needed.
    module = get_detector(params.model, len(classes), weights=None, image_size=params.image_size)
    try:
        module.load_state_dict(data["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit its detector: {err}") from err
    module.weights_note = f"checkpoint {path}"
    return TrainedDetector(
        module=module.to(device).eval(),
        classes=classes,
        params=params,
        metrics=data["metrics"],
        optimizer_state=data["optimizer_state"],
        epoch=int(data["epoch"]),
    )
