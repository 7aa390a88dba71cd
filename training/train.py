"""Train a classifier on labelled images: ``train`` for files, ``train_arrays`` for preloaded
pixels. Both hold the labelled set in memory as uint8 at the model's size and run the same loop.

The labelled set of an active-learning loop is small (tens to a few thousand items), so ``train``
decodes each file once rather than every epoch; 1,000 RGB images at 224 px take about 150 MB.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training._progress import progress_bar
from training.data import ArrayDataset, TransformConfig, augment, load_arrays, normalize
from training.labels import check_classes, check_label_idx, check_same_length, encode_labels
from training.models import FeatureClassifier, get_model, model_spec
from training.params import TrainParams
from training.trained import TrainedModel

__all__ = ["TrainParams", "TrainedModel", "split_for_validation", "train", "train_arrays"]

# Fewer held-out items than this cannot tell a better model from a worse one; train on all.
MIN_VAL_ITEMS = 20
# Validate at most this often (in steps), so tiny epochs do not spend their time validating.
MIN_EVAL_INTERVAL = 20
_EVAL_BATCH = 512

# Called after each validation check with (optimiser step, validation accuracy); True stops
# training there (as early stopping does: the best weights so far are kept).
OnCheck = Callable[[int, float], bool]


def train(
    paths: Sequence[str | Path],
    labels: Sequence[str],
    classes: Sequence[str],
    params: TrainParams | None = None,
    *,
    progress: bool = False,
    warm_start: TrainedModel | None = None,
    on_check: OnCheck | None = None,
    check_on: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedModel:
    """Train ``params.model`` on image files ``paths`` labelled with class names ``labels``.

    ``classes`` fixes the output order. Raises ``ValueError`` for an unknown label (naming it and
    the valid classes), duplicate classes, fewer than 2 classes, or a label count that differs
    from the path count; ``ImageError`` naming any file that cannot be read. ``warm_start``
    continues from an earlier model's weights and optimiser state (same model and classes);
    ``params.weights`` is then ignored. ``progress`` shows a progress bar; otherwise nothing is
    printed. ``on_check(step, val_accuracy)`` is called after each validation check (none run
    when no validation split is held out and no ``check_on`` given); returning True stops
    training there, and ``metrics["stopped_by_on_check"]`` records it. ``check_on`` (uint8
    images, label indices): the images whose accuracy ``on_check`` gets, instead of the split's
    (a tuner's own validation images); they only report, never steer the training.
    """
    params = params or TrainParams()
    classes = check_classes(classes)
    check_same_length(len(paths), len(labels), "paths")
    label_idx = encode_labels(labels, classes)
    tconf = transform_for(params)
    check_warm_start(warm_start, params, classes)
    images = load_arrays(paths, tconf, num_workers=params.num_workers, progress=progress)
    pixels = ArrayDataset(images, tconf).images
    return _fit(pixels, label_idx, classes, tconf, params, progress=progress,
                warm_start=warm_start, on_check=on_check, check_on=_check_set(check_on, tconf))


def train_arrays(
    images: np.ndarray,
    label_idx: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    params: TrainParams | None = None,
    *,
    progress: bool = False,
    warm_start: TrainedModel | None = None,
    on_check: OnCheck | None = None,
    check_on: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedModel:
    """Train on preloaded uint8 images ``[N, H, W]`` or ``[N, H, W, C]`` with integer labels
    ``label_idx`` [N] indexing ``classes``. Otherwise as ``train``.
    """
    params = params or TrainParams()
    classes = check_classes(classes)
    label_idx = check_label_idx(label_idx, len(classes))
    check_same_length(len(images), len(label_idx))
    tconf = transform_for(params)
    check_warm_start(warm_start, params, classes)
    pixels = ArrayDataset(images, tconf).images
    return _fit(pixels, label_idx, classes, tconf, params, progress=progress,
                warm_start=warm_start, on_check=on_check, check_on=_check_set(check_on, tconf))


def _check_set(check_on, tconf: TransformConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    if check_on is None:
        return None
    images, labels = check_on
    check_same_length(len(images), len(labels), "check_on images")
    return ArrayDataset(images, tconf).images, torch.as_tensor(np.asarray(labels),
                                                               dtype=torch.int64)


def transform_for(params: TrainParams) -> TransformConfig:
    """The input transform for ``params.model`` at ``params.image_size`` (or its default)."""
    spec = model_spec(params.model)
    return TransformConfig(spec.channels, params.image_size or spec.image_size, spec.mean, spec.std)


def split_for_validation(
    label_idx: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices ``(train, val, note)``: about ``fraction`` of each class held out, at least one
    item per class kept for training. With fewer than ``MIN_VAL_ITEMS`` to hold out, ``val`` is
    empty and ``note`` says so.
    """
    n = len(label_idx)
    if fraction == 0:
        return np.arange(n), np.arange(0), ("none (val_fraction 0): trained on all labels for "
                                            "the whole schedule")
    if round(n * fraction) < MIN_VAL_ITEMS:
        note = (
            f"none: {n} labels are too few to hold out {MIN_VAL_ITEMS} for validation; "
            f"trained on all of them for a fixed number of steps"
        )
        return np.arange(n), np.arange(0), note
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(label_idx):
        members = rng.permutation(np.flatnonzero(label_idx == c))
        val.append(members[: min(round(len(members) * fraction), len(members) - 1)])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx, f"stratified hold-out of {len(val_idx)} of {n} labels"


def check_warm_start(warm_start, params, classes: tuple[str, ...], *,
                     other_way: str = ", or pass weights= instead") -> None:
    """Refuse to continue training a model (classifier or detector) of another architecture
    or over other classes than this run's."""
    if warm_start is None:
        return
    if warm_start.params.model != params.model or warm_start.classes != classes:
        raise ValueError(
            f"warm_start was trained as {warm_start.params.model!r} on classes "
            f"{list(warm_start.classes)}; this run asks for {params.model!r} on {list(classes)}. "
            f"Warm-start only with the same model and classes{other_way}."
        )


def _fit(
    pixels: torch.Tensor,  # uint8 [N, C, S, S]
    label_idx: np.ndarray,  # [N]
    classes: tuple[str, ...],
    tconf: TransformConfig,
    params: TrainParams,
    *,
    progress: bool,
    warm_start: TrainedModel | None,
    on_check: OnCheck | None,
    check_on: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TrainedModel:
    if len(pixels) == 0:
        raise ValueError("no labelled images to train on")
    started = time.perf_counter()
    device = torch.device(params.device)
    train_idx, val_idx, split_note = split_for_validation(
        label_idx, params.val_fraction, seed=params.seed
    )
    generator = torch.Generator().manual_seed(params.seed)  # shuffling and augmentation
    # Weight init and dropout draw from torch's global generator: fork it so training is
    # reproducible from params.seed and the caller's random state is left as it was.
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(params.seed)
        if warm_start is None:
            module = get_model(params.model, len(classes), weights=params.weights)
        else:
            module = copy.deepcopy(warm_start.module)
        # channels_last roughly halves CPU conv time with oneDNN; predict uses it too.
        module.to(device=device, memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=params.lr, weight_decay=params.weight_decay
        )
        if warm_start is not None and warm_start.optimizer_state is not None:
            optimizer.load_state_dict(warm_start.optimizer_state)
        stats = _optimise(
            module,
            optimizer,
            pixels.to(device),
            torch.from_numpy(label_idx).to(device),
            torch.from_numpy(train_idx),
            torch.from_numpy(val_idx),
            tconf,
            params,
            generator=generator,
            progress=progress,
            on_check=on_check,
            check_on=check_on,
        )
    module.eval()
    epoch = (warm_start.epoch if warm_start else 0) + stats.pop("epochs")
    metrics: dict[str, Any] = {
        "n_labels": len(label_idx),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "validation": split_note,
        "weights": module.weights_note if warm_start is None else "warm start",
        **stats,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return TrainedModel(
        module=module,
        classes=classes,
        transform=tconf,
        params=params,
        metrics=metrics,
        optimizer_state=optimizer.state_dict(),
        epoch=epoch,
    )


def _optimise(
    module: FeatureClassifier,
    optimizer: torch.optim.Optimizer,
    pixels: torch.Tensor,  # uint8 [N, C, S, S] on the device
    targets: torch.Tensor,  # [N] on the device
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    tconf: TransformConfig,
    params: TrainParams,
    *,
    generator: torch.Generator,
    progress: bool,
    on_check: OnCheck | None,
    check_on: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    batch_size = min(params.batch_size, len(train_idx))
    # The last partial batch is dropped: each epoch reshuffles, so every item is still used,
    # and batch-norm statistics never come from a handful of images.
    steps_per_epoch = max(1, len(train_idx) // batch_size)
    total_steps = max(params.epochs * steps_per_epoch, params.min_steps, 1)
    eval_every = max(steps_per_epoch, MIN_EVAL_INTERVAL)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.lr, total_steps=total_steps, pct_start=0.2
    )
    has_val = len(val_idx) > 0
    if check_on is not None:
        check_pixels, check_targets = (t.to(pixels.device) for t in check_on)
        check_idx = torch.arange(len(check_targets))
    best: tuple[float, float] = (-1.0, math.inf)  # (val accuracy, -val loss is the tie-break)
    best_state, best_step, since_best = None, 0, 0
    train_loss, step, stopped_early, stopped_by_hook = math.nan, 0, False, False
    module.train()
    with progress_bar(progress, f"training {params.model}", total_steps) as bar:
        while step < total_steps and not (stopped_early or stopped_by_hook):
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            for b in range(steps_per_epoch):
                batch = order[b * batch_size : (b + 1) * batch_size].to(pixels.device)
                x = augment(normalize(pixels[batch], tconf), params.augment, generator=generator)
                logits = module(x.contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits, targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                bar.advance()
                value = loss.item()
                train_loss = value if math.isnan(train_loss) else 0.9 * train_loss + 0.1 * value
                due = step % eval_every == 0 or step == total_steps
                if has_val and due:
                    acc, val_loss = _validate(module, pixels, targets, val_idx, tconf)
                    bar.describe(f"training {params.model} (val acc {acc:.3f})")
                    if (acc, -val_loss) > (best[0], -best[1]):
                        best, best_step, since_best = (acc, val_loss), step, 0
                        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                    else:
                        since_best += 1
                    stopped_early = since_best >= params.patience and step >= params.min_steps
                if on_check is not None and due and (has_val or check_on is not None):
                    if check_on is not None:
                        acc, _ = _validate(module, check_pixels, check_targets, check_idx, tconf)
                    if on_check(step, acc):
                        stopped_by_hook = True
                if step >= total_steps or stopped_early or stopped_by_hook:
                    break
    if best_state is not None:
        module.load_state_dict(best_state)
    stats: dict[str, Any] = {
        "steps": step,
        "planned_steps": total_steps,
        "epochs": math.ceil(step / steps_per_epoch),
        "batch_size": batch_size,
        "train_loss": round(train_loss, 5),
        "stopped_early": stopped_early,
    }
    if has_val:
        stats.update(val_accuracy=best[0], val_loss=round(best[1], 5), best_step=best_step)
    if on_check is not None:
        stats["stopped_by_on_check"] = stopped_by_hook
    return stats


def _validate(
    module: FeatureClassifier,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    val_idx: torch.Tensor,
    tconf: TransformConfig,
) -> tuple[float, float]:
    module.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(val_idx), _EVAL_BATCH):
            batch = val_idx[start : start + _EVAL_BATCH].to(pixels.device)
            x = normalize(pixels[batch], tconf).contiguous(memory_format=torch.channels_last)
            logits = module(x)
            loss_sum += F.cross_entropy(logits, targets[batch], reduction="sum").item()
            correct += (logits.argmax(1) == targets[batch]).sum().item()
    module.train()
    return correct / len(val_idx), loss_sum / len(val_idx)
