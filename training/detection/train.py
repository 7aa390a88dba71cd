"""Train a detector on image files with boxes. The labelled set is small (hundreds to a few
thousand images of ~100-160 px), so every file is decoded once and held in memory as uint8.

No validation split or early stopping: the schedule is fixed by ``params``. Judging a detector
takes mAP over held-out images (``detection_map``), which the caller can run on its own split.
The one exception is a detector that ends its schedule unable to learn (its zoo entry's
``stalled`` check holds for the last ``STALLED_STEPS`` steps that say anything): training starts
again from the same start at half the learning rate, at most ``RESTARTS`` times, and the metrics
say so. Only the end counts: FCOS's box head can look dead for a stretch early on and recover
(measured: 25 steps in a row at a box loss of exactly 1 in the first 30 of a run that then
learned), while at the end of the schedule the rate is near zero and nothing recovers.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from training._progress import progress_bar
from training.detection.data import (
    check_detection_classes,
    check_inside,
    check_targets,
    iter_images,
    shift,
    to_float,
)
from training.detection.models import detector_entry, get_detector
from training.detection.params import DetectParams
from training.detection.trained import TrainedDetector
from training.train import check_warm_start

# Last steps that must all look stalled for a restart: one stalled-looking step can be chance,
# twenty cannot (a dead FCOS box head gives a loss of exactly 1 on every step).
STALLED_STEPS = 20
RESTARTS = 2


class DetectorStalledError(RuntimeError):
    """Training stalled at the configured learning rate and every slower restart."""


def train_detector(
    paths: Sequence[str | Path],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    params: DetectParams | None = None,
    *,
    progress: bool = False,
    seed: int = 0,
    warm_start: TrainedDetector | None = None,
) -> TrainedDetector:
    """Train ``params.model`` on the image files ``paths`` with their boxes.

    ``targets[i]`` is ``{"boxes": [M, 4] xyxy pixels, "labels": [M] class names}``; M may be 0
    (an image with nothing in it is a label too). ``classes`` fixes the output order. Raises
    ``ValueError`` naming the image for a malformed target, an unknown class, a box with no area
    or one outside its image (see ``check_targets``); ``ImageError`` naming a file that cannot
    be read; ``WeightsUnavailableError`` if ``params.weights`` is "imagenet" and the file is
    not in torch's hub cache. ``seed`` fixes initialisation, shuffling and augmentation (torch's
    global generator is left as it was). ``warm_start`` continues from an earlier detector's
    weights and optimiser state (same model and classes). ``progress`` shows progress bars.
    """
    params = params or DetectParams()
    classes = check_detection_classes(classes)
    encoded = check_targets(paths, targets, classes)
    check_warm_start(warm_start, params, classes, other_way="")
    started = time.perf_counter()
    images = []
    first = detector_entry(params.model).first_label
    boxes_labels = []
    for path, image, (boxes, labels) in zip(
        paths, iter_images(paths, progress=progress, description="reading images"), encoded,
        strict=True,
    ):
        check_inside(path, boxes, width=image.shape[2], height=image.shape[1])
        images.append(image)
        boxes_labels.append((torch.from_numpy(boxes), torch.from_numpy(labels) + first))
    if not images:
        raise ValueError("no labelled images to train on")
    tried: list[float] = []
    for attempt in range(RESTARTS + 1):
        lr = params.lr / 2**attempt
        module, optimizer, stats = _train_once(images, boxes_labels, classes, params, lr=lr,
                                               seed=seed, warm_start=warm_start,
                                               progress=progress)
        tried.append(lr)
        if not stats["stalled"]:
            break
    else:
        raise DetectorStalledError(
            f"{params.model} ended training unable to learn (for FCOS: every predicted box "
            f"of zero size over its last {STALLED_STEPS} steps with objects) at lr "
            f"{', '.join(f'{v:g}' for v in tried)}; try another [training] lr or seed")
    module.eval()
    metrics: dict[str, Any] = {
        "n_images": len(images),
        "n_boxes": sum(len(b) for b, _ in boxes_labels),
        "weights": module.weights_note if warm_start is None else "warm start",
        "seed": seed,
        **{k: v for k, v in stats.items() if k not in ("epochs", "stalled")},
        "lr": lr,
        "restarts": len(tried) - 1,  # slower restarts after a stall (module docstring)
        "seconds": round(time.perf_counter() - started, 3),
    }
    return TrainedDetector(
        module=module,
        classes=classes,
        params=params,
        metrics=metrics,
        optimizer_state=optimizer.state_dict(),
        epoch=(warm_start.epoch if warm_start else 0) + stats["epochs"],
    )


def _train_once(images, boxes_labels, classes, params: DetectParams, *, lr: float, seed: int,
                warm_start: TrainedDetector | None, progress: bool):
    """One training run at peak learning rate ``lr``: (module, optimizer, stats)."""
    device = torch.device(params.device)
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        if warm_start is None:
            module = get_detector(params.model, len(classes), weights=params.weights,
                                  image_size=params.image_size)
        else:
            module = copy.deepcopy(warm_start.module)
        module.to(device)
        optimizer = torch.optim.AdamW(module.parameters(), lr=lr,
                                      weight_decay=params.weight_decay)
        if warm_start is not None and warm_start.optimizer_state is not None:
            optimizer.load_state_dict(warm_start.optimizer_state)
            # Loading restores the saved run's settings too; the schedule resets the learning
            # rate, but this run's weight decay must be set again.
            for group in optimizer.param_groups:
                group["weight_decay"] = params.weight_decay
        stats = _optimise(module, optimizer, images, boxes_labels, params, lr=lr, seed=seed,
                          progress=progress)
    return module, optimizer, stats


def _optimise(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: list[torch.Tensor],  # uint8 [3, H, W] each
    boxes_labels: list[tuple[torch.Tensor, torch.Tensor]],  # [M, 4] float32, [M] int64
    params: DetectParams,
    *,
    lr: float,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    device = next(module.parameters()).device
    generator = torch.Generator().manual_seed(seed)  # shuffling and augmentation
    n = len(images)
    batch_size = min(params.batch_size, n)
    # The last partial batch is dropped: each epoch reshuffles, so every image is still used.
    steps_per_epoch = max(1, n // batch_size)
    total_steps = max(params.epochs * steps_per_epoch, params.min_steps, 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.2
    )
    stalled = detector_entry(params.model).stalled or (lambda losses: False)
    stalled_run = 0  # the last steps in a row that looked stalled (module docstring)
    losses: dict[str, float] = {}
    step = 0
    module.train()
    with progress_bar(progress, f"training {params.model}", total_steps) as bar:
        while step < total_steps:
            order = torch.randperm(n, generator=generator)
            for b in range(steps_per_epoch):
                batch_x, batch_t = [], []
                for i in order[b * batch_size : (b + 1) * batch_size].tolist():
                    image, (boxes, labels) = images[i], boxes_labels[i]
                    if float(torch.rand(1, generator=generator)) < params.augment:
                        image, boxes = shift(image, boxes, generator=generator)
                    batch_x.append(to_float(image.to(device)))
                    batch_t.append({"boxes": boxes.to(device), "labels": labels.to(device)})
                parts = module(batch_x, batch_t)  # {loss name: scalar}
                loss = sum(parts.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                bar.advance()
                now = {name: value.item() for name, value in parts.items()}
                for name, v in now.items():  # running averages, for the metrics
                    losses[name] = v if name not in losses else 0.9 * losses[name] + 0.1 * v
                verdict = stalled(now)
                if verdict is not None:  # None: this step says nothing either way
                    stalled_run = stalled_run + 1 if verdict else 0
                if step >= total_steps:
                    break
    return {
        "stalled": stalled_run >= STALLED_STEPS,
        "steps": step,
        "epochs": math.ceil(step / steps_per_epoch),
        "batch_size": batch_size,
        "train_loss": {k: round(v, 5) for k, v in losses.items()},
    }
