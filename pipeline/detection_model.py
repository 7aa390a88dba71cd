"""The detector side of a detection project, in the label store's terms: values (``{"width",
"height", "boxes": [{"label", "x", "y", "w", "h"}]}``, pixels, corner and size) in and out,
``training.detection``'s arrays (xyxy) inside. The one place the two box forms meet."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeling.tasks.detection import MIN_SIDE_PX
from training.detection.metrics import detection_map
from training.detection.params import DetectParams
from training.detection.predict import predict_detector
from training.detection.train import train_detector
from training.detection.trained import TrainedDetector


def detect_params(training) -> DetectParams:
    """The detector's settings from the config's ``[training]`` section."""
    return DetectParams(model=training.model, weights=training.weights,
                        image_size=training.image_size, epochs=training.epochs,
                        batch_size=training.batch_size, lr=training.lr,
                        weight_decay=training.weight_decay, augment=training.augment,
                        min_steps=training.min_steps)


def as_target(value: dict) -> dict:
    """A value as ``training.detection`` takes it: ``{"boxes": [M, 4] xyxy, "labels"}``."""
    boxes = value.get("boxes") or []
    xyxy = np.array([[b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]] for b in boxes],
                    dtype=np.float32).reshape(-1, 4)
    return {"boxes": xyxy, "labels": [b["label"] for b in boxes]}


def as_value(detections: dict) -> dict:
    """One image's detections as a value with a score per box. A box the detector clipped to
    the image's edge can be left under a pixel wide: no person could draw it, Label Studio's
    sync would refuse it, so it is not kept (``labeling.tasks.detection.MIN_SIDE_PX``)."""
    width, height = int(detections["width"]), int(detections["height"])
    boxes = []
    for (x0, y0, x1, y1), label, score in zip(detections["boxes"].tolist(), detections["labels"],
                                              detections["scores"].tolist(), strict=True):
        x0, y0 = max(0.0, round(x0, 2)), max(0.0, round(y0, 2))
        x1, y1 = min(float(width), round(x1, 2)), min(float(height), round(y1, 2))
        if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
            continue
        boxes.append({"label": label, "x": x0, "y": y0, "w": round(x1 - x0, 2),
                      "h": round(y1 - y0, 2), "score": round(score, 4)})
    return {"width": width, "height": height, "boxes": boxes}


def train_values(paths: Sequence[str], values: Sequence[dict], classes: Sequence[str],
                 params: DetectParams, *, seed: int = 0, progress: bool = False,
                 warm_start: TrainedDetector | None = None) -> TrainedDetector:
    """A detector trained on the images ``paths`` and their boxes ``values`` (from
    ``warm_start``'s weights, if given)."""
    return train_detector(paths, [as_target(v) for v in values], classes, params,
                          progress=progress, seed=seed, warm_start=warm_start)


def predict_values(model: TrainedDetector, paths: Sequence[str], *,
                   progress: bool = False) -> list[dict]:
    """Each image's scored boxes, as values, in input order."""
    return [as_value(d) for d in predict_detector(model, paths, progress=progress)]


def score_boxes(predicted: Sequence[dict], truth: Sequence[dict],
                classes: Sequence[str]) -> dict:
    """mAP@0.5 and mAP@[.5:.95] of scored values against people's (0 where COCO leaves it
    undefined: no true box at all)."""
    preds = []
    for value in predicted:
        target = as_target(value)
        target["scores"] = np.array([b["score"] for b in value.get("boxes") or []],
                                    dtype=np.float32)
        preds.append(target)
    result = detection_map(preds, [as_target(v) for v in truth], classes)
    return {"map_50": result["map_50"] or 0.0, "map": result["map"] or 0.0}
