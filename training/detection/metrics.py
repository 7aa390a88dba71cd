"""Detection quality as COCO mAP, through torchmetrics' ``MeanAveragePrecision`` (pycocotools
underneath): the numbers detection papers and tools report, not a re-implementation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from training.detection.data import check_detection_classes

# COCO's "no value": a class with no ground truth anywhere has no AP.
_UNDEFINED = -1.0


def detection_map(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
) -> dict[str, Any]:
    """COCO mean average precision of ``predictions`` (as ``predict_detector`` returns them:
    boxes, labels as class names, scores) against ``targets`` (boxes, labels), image by image.

    Returns ``{"map_50": AP at IoU 0.5, "map": AP averaged over IoU 0.5:0.95, "ap_50": {class:
    AP at IoU 0.5}, "n_images", "n_truth"}``, means over the classes that have ground truth.
    A value is None where COCO leaves it undefined (no ground truth at all, or none of that
    class). Raises ``ValueError`` for differing counts or an unknown class name.
    """
    from torchmetrics.detection import MeanAveragePrecision

    classes = check_detection_classes(classes)
    if len(predictions) != len(targets):
        raise ValueError(f"got {len(predictions)} predictions but {len(targets)} targets; "
                         f"need one each, per image")
    index = {c: i for i, c in enumerate(classes)}
    preds = [_encoded(p, index, f"prediction {i}", scores=True) for i, p in enumerate(predictions)]
    truth = [_encoded(t, index, f"target {i}", scores=False) for i, t in enumerate(targets)]
    every_iou = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")
    # A second pass at the one threshold gives per-class AP at IoU 0.5 (class_metrics reports
    # per-class AP averaged over the thresholds it was given).
    at_50 = MeanAveragePrecision(iou_type="bbox", backend="pycocotools", iou_thresholds=[0.5],
                                 class_metrics=True)
    every_iou.update(preds, truth)
    at_50.update(preds, truth)
    overall, per_class = every_iou.compute(), at_50.compute()
    ap_50: dict[str, float | None] = dict.fromkeys(classes)
    present = per_class["classes"].reshape(-1).tolist()
    for k, ap in zip(present, per_class["map_per_class"].reshape(-1).tolist(), strict=True):
        ap_50[classes[k]] = _defined(ap)
    return {
        "map_50": _defined(float(per_class["map"])),
        "map": _defined(float(overall["map"])),
        "ap_50": ap_50,
        "n_images": len(targets),
        "n_truth": sum(len(t["labels"]) for t in truth),
    }


def _encoded(item: Mapping[str, Any], index: dict[str, int], where: str, *, scores: bool):
    boxes = torch.as_tensor(np.asarray(item["boxes"], dtype=np.float32)).reshape(-1, 4)
    unknown = [c for c in item["labels"] if c not in index]
    if unknown:
        raise ValueError(f"{where}: unknown class {unknown[0]!r}; valid classes: "
                         f"{', '.join(index)}")
    labels = torch.tensor([index[c] for c in item["labels"]], dtype=torch.int64)
    if len(labels) != len(boxes):
        raise ValueError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
    out = {"boxes": boxes, "labels": labels}
    if scores:
        out["scores"] = torch.as_tensor(np.asarray(item["scores"], dtype=np.float32)).reshape(-1)
        if len(out["scores"]) != len(boxes):
            raise ValueError(f"{where}: {len(boxes)} boxes but {len(out['scores'])} scores")
    return out


def _defined(value: float) -> float | None:
    return None if value == _UNDEFINED else value
