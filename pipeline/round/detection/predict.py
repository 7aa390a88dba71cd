"""The predict step for detection: the champion's scored boxes for every image without a
person's label (and the held-out ones, on which the accept step chooses its cut), with each
image's confidence (``labeling.box_scores``), saved once per round and model version."""

from __future__ import annotations

import json
from pathlib import Path

from labeling.box_scores import image_confidence, machine_value
from pipeline.detection_model import predict_values
from pipeline.files import write_text_atomic
from pipeline.project.project import Project
from pipeline.round.detection.labeled import labeled_values
from pipeline.round.labeled import champion_model_path, items_to_predict
from pipeline.round.predict import by_choosing_round, saved_files
from training.detection.checkpoint import load_detector


def predictions_file(project: Project, version: str, round_id: int) -> Path:
    return project.predictions_dir / f"round{round_id}-v{version}.boxes.json"


def predict_pool(project: Project, round_id: int, *, progress: bool) -> dict:
    """Predict the pool with the champion; a resumed round reuses the saved file."""
    found = champion_model_path(project)
    if found is None:
        return {"predicted": 0, "reason": "no champion yet"}
    version, ckpt = found
    out = predictions_file(project, version, round_id)
    if out.exists():
        return {"predicted": len(load_predictions(out)), "version": version, "file": str(out)}
    _, eval_set = labeled_values(project)
    items = items_to_predict(project, eval_set)
    model = load_detector(ckpt)
    values = predict_values(model, [i.path for i in items], progress=progress)
    for value in values:
        value["confidence"] = image_confidence([b["score"] for b in value["boxes"]])
    write_text_atomic(out, json.dumps({"version": version, "items": dict(
        zip((i.key for i in items), values, strict=True))}))
    return {"predicted": len(items), "version": version, "file": str(out)}


def load_predictions(path) -> dict[str, dict]:
    """Item key -> its prediction (boxes with scores, the image's size and confidence)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["items"]


def latest_machine_values(project: Project) -> dict[str, dict]:
    """Item key -> the boxes the newest predictions would keep (``machine_value``): the
    model's answer a person's is compared with for a second opinion (empty before any)."""
    files = saved_files(project, suffix=".boxes.json")
    return ({k: machine_value(p) for k, p in load_predictions(files[-1]).items()}
            if files else {})


def choosing_values(project: Project, keys) -> dict[str, dict]:
    """Item key -> the boxes the round which picked the item would have kept for it (made
    while it had no label: out-of-sample), as ``choosing_probs`` does for classes."""
    out: dict[str, dict] = {}
    for round_id, chosen in by_choosing_round(project, keys).items():
        files = saved_files(project, round_id, suffix=".boxes.json")
        if files:
            preds = load_predictions(files[-1])
            out.update({k: machine_value(preds[k]) for k in chosen if k in preds})
    return out


def pre_annotations(project: Project, predicted: dict) -> dict[str, tuple[dict, float]]:
    """Item key -> (the boxes the machine label would keep, with their scores; the image's
    confidence), what annotators are shown to correct."""
    if "file" not in predicted:
        return {}
    return {k: (machine_value(p), float(p["confidence"]))
            for k, p in load_predictions(predicted["file"]).items()}
