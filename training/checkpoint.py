"""Save and load a ``TrainedModel`` as one file holding plain data only (dicts, lists, numbers,
strings, tensors), so it loads with ``torch.load(..., weights_only=True)``: opening a checkpoint
never runs code from it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import TransformConfig
from training.models import NormalizedLinear, get_model
from training.params import TrainParams
from training.trained import TrainedModel

FORMAT = "labelloop.checkpoint"
# 2: the "head" key (a probe's head is a NormalizedLinear). A version-1 file has a plain linear
# head; a labelloop that reads only version 1 refuses a version-2 file rather than mispredict,
# so a model with a plain head is still written as version 1 (older labelloops can roll back to
# it).
VERSION = 2
HEADS = ("linear", "normalized")
_REQUIRED = (
    "format", "version", "model_name", "classes", "transform", "params", "metrics",
    "temperature", "epoch", "state_dict", "optimizer_state",
)  # fmt: skip


class CheckpointError(Exception):
    """A checkpoint could not be written or read; the message names the file and the reason."""


def save_checkpoint(model: TrainedModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically: a temporary file in the same directory is written,
    flushed and fsynced, then renamed over ``path``. On any failure ``path`` is left as it was
    (an earlier checkpoint stays intact) and no temporary file remains.
    """
    path = Path(path)
    head = "normalized" if isinstance(model.module.head, NormalizedLinear) else "linear"
    contents = {
        "format": FORMAT,
        "version": VERSION if head == "normalized" else 1,
        "model_name": model.params.model,
        "classes": list(model.classes),
        "transform": model.transform.to_dict(),
        "params": plain(model.params.to_dict(), "params", path),
        "metrics": plain(model.metrics, "metrics", path),
        "temperature": float(model.temperature),
        "epoch": int(model.epoch),
        "head": head,
        "state_dict": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "optimizer_state": model.optimizer_state,
    }
    write_checkpoint_file(contents, path)


def write_checkpoint_file(contents: dict[str, Any], path: Path) -> None:
    """Write plain ``contents`` to ``path`` atomically, as ``save_checkpoint`` describes: a
    temporary file in the same directory, flushed and fsynced, then renamed over ``path``.
    Raises ``CheckpointError`` naming ``path``; on failure ``path`` is left as it was."""
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot save checkpoint {path}: directory {path.parent} not found")
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as f:
            tmp_name = f.name
            torch.save(contents, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except (OSError, pickle.PicklingError, RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"cannot save checkpoint {path}: {err}") from err
    finally:
        # Also on KeyboardInterrupt: never leave a half-written temporary file behind.
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def load_checkpoint(path: str | Path, *, device: str = "cpu") -> TrainedModel:
    """Read a checkpoint written by ``save_checkpoint`` onto ``device``.

    Raises ``CheckpointError`` naming ``path`` if it is missing, corrupt or not a checkpoint.
    """
    path = Path(path)
    data = read_checkpoint_file(path, FORMAT, VERSION, _REQUIRED, device=device)
    classes = tuple(data["classes"])
    params = TrainParams.from_dict(data["params"])
    head = data.get("head", "linear" if data["version"] < 2 else None)
    if head not in HEADS:
        raise CheckpointError(f"checkpoint {path} has head {head!r}; this labelloop reads "
                              f"{' or '.join(HEADS)}")
    module = get_model(data["model_name"], len(classes))
    if head == "normalized":
        module.head = NormalizedLinear(module.head.in_features, module.head.out_features)
    try:
        module.load_state_dict(data["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit its model: {err}") from err
    module.weights_note = f"checkpoint {path}"
    return TrainedModel(
        module=module.to(device).eval(),
        classes=classes,
        transform=TransformConfig.from_dict(data["transform"]),
        params=params,
        metrics=data["metrics"],
        temperature=float(data["temperature"]),
        optimizer_state=data["optimizer_state"],
        epoch=int(data["epoch"]),
    )


def read_checkpoint_file(
    path: Path, format_name: str, version: int, required: tuple[str, ...], *, device: str
) -> dict[str, Any]:
    """The plain contents of a file written by ``write_checkpoint_file``, checked to be format
    ``format_name`` at most ``version`` with every key in ``required``.

    Raises ``CheckpointError`` naming ``path`` if it is missing, corrupt or another format.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        # Not torch's text where it refused to unpickle: it advises weights_only=False, which
        # would run whatever code the file holds, and is no step for a user of this tool.
        text = str(err)
        if "WeightsUnpickler error:" in text:  # its own reason, past torch's advice
            text = text.split("WeightsUnpickler error:", 1)[1]
        first = (text.strip().splitlines() or [type(err).__name__])[0].split(". Please")[0]
        if "weights_only" in first:
            first = "it does not load as tensors and plain values, as labelloop's checkpoints do"
        raise CheckpointError(
            f"cannot read checkpoint {path} (corrupt or not a checkpoint): {first}"
        ) from err
    if not isinstance(data, dict) or data.get("format") != format_name:
        found = data.get("format") if isinstance(data, dict) else None
        other = f" (it holds format {found!r})" if isinstance(found, str) else ""
        raise CheckpointError(
            f"{path} is not a labelloop checkpoint of format {format_name!r}{other}"
        )
    missing = [k for k in required if k not in data]
    if missing or data["version"] > version:
        raise CheckpointError(
            f"checkpoint {path} is version {data.get('version')} with missing keys {missing}; "
            f"this labelloop reads version {version}"
        )
    return data


def plain(obj: Any, where: str, path: Path) -> Any:
    """``obj`` as plain dicts/lists/scalars (numpy scalars become Python numbers); anything else
    would not load with ``weights_only=True``, so it is refused before writing, naming ``where``
    it was found."""
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise CheckpointError(
                f"cannot save checkpoint {path}: {where} has non-string key {bad[0]!r}"
            )
        return {k: plain(v, f"{where}[{k!r}]", path) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v, f"{where}[{i}]", path) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str | torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise CheckpointError(
        f"cannot save checkpoint {path}: {where} is a {type(obj).__name__}; checkpoints hold "
        f"only dicts, lists, numbers, strings and tensors"
    )


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable across a power cut (POSIX); not possible on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
