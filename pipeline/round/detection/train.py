"""The train and promote steps for detection: a challenger detector trained on the people's
boxes (or found, after a crash, by its label snapshot) and registered; promoted if, on the same
random held-out images (the part that chooses, ``labeling.held_out``), its mAP@0.5 is higher
(mAP@[.5:.95] breaks a tie), the measure the detection literature and users compare detectors
by. With ``[training] warm_start`` (new detection projects have it on) the challenger continues
from the champion's weights, so the steps of earlier rounds are not thrown away; the registry
tags each version with its start."""

from __future__ import annotations

import json

from pipeline.detection_model import detect_params, predict_values, score_boxes, train_values
from pipeline.files import write_text_atomic
from pipeline.project.project import Project
from pipeline.round.detection.labeled import as_texts, labeled_values
from pipeline.round.detection.start import Start, fresh, start_from, write_lineage
from pipeline.round.labeled import choosing_part, paths_of
from pipeline.round.promote import promote_if_better
from pipeline.round.retrain import run_snapshot, why_not_retrain
from training.detection.checkpoint import load_detector, save_detector
from training.detection.train import DetectorStalledError

# Fewest training images with at least one box that a detector is trained on.
MIN_TRAIN_IMAGES = 4


def train_challenger(project: Project, round_id: int, *, progress: bool) -> dict:
    """Train (or find, after a crash) the challenger for the current boxes; register it."""
    train_set, eval_set = labeled_values(project)
    with_boxes = sum(bool(v["boxes"]) for v in train_set.values())
    if with_boxes < MIN_TRAIN_IMAGES:
        return {"trained": False, "reason": f"{with_boxes} training image(s) with boxes < "
                                            f"{MIN_TRAIN_IMAGES}"}
    texts = as_texts(train_set)
    params = detect_params(project.config.training)
    snapshot = run_snapshot(texts, params)
    if (reason := why_not_retrain(project, snapshot, texts)) is not None:
        return {"trained": False, "reason": reason}
    ckpt = project.models_dir / f"{snapshot}.det.pt"
    stalled = project.models_dir / f"{snapshot}.stalled.txt"
    if stalled.exists():  # these labels already failed from the start weights: again
        return {"trained": False, "stalled": True, "reason": stalled.read_text()}
    if not ckpt.exists():
        write_text_atomic(project.models_dir / f"{snapshot}.labels.json",
                          json.dumps(texts, sort_keys=True))
        keys = sorted(train_set)
        start = start_from(project, params)
        try:
            model, start = _train(project, keys, train_set, params, start, progress=progress)
        except DetectorStalledError as err:
            # No model is better than one that learned nothing: the champion stays, and the
            # labels are not tried again from the start weights until they change.
            write_text_atomic(stalled, str(err))
            return {"trained": False, "stalled": True, "reason": str(err)}
        write_lineage(project, snapshot, start, keys)
        # Scored on the held-out images that choose models, as for classes: a version picked
        # by hand from `labelloop models list` is picked on what promotion uses.
        eval_set = choosing_part(project, eval_set)
        metrics = {"n_train": len(keys), "n_eval": len(eval_set), "start": start.note}
        if eval_set:
            metrics.update(_score(project, model, eval_set))
        model.metrics.update(metrics)
        save_detector(model, ckpt)
    model = load_detector(ckpt)
    metrics = {k: float(v) for k, v in model.metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    start_note = str(model.metrics.get("start", "start weights"))
    version = project.registry.register(ckpt, params=model.params.to_dict(), metrics=metrics,
                                        snapshot=snapshot, round_id=round_id,
                                        tags={"start": start_note})
    return {"trained": True, "version": version, "snapshot": snapshot,
            "n_train": int(metrics.get("n_train", len(train_set))), "start": start_note}


def _train(project: Project, keys, train_set, params, start: Start, *, progress: bool):
    """(detector, the start it came from). A continued champion that stalls is tried once
    more from the start weights: its state is the suspect, not the labels."""
    def run(warm):
        return train_values(paths_of(project, keys), [train_set[k] for k in keys],
                            project.classes, params, seed=project.config.training.seed,
                            progress=progress, warm_start=warm)

    try:
        return run(start.model), start
    except DetectorStalledError:
        if start.model is None:
            raise
    return run(None), fresh(f"continuing {start.note} stalled")


def _score(project: Project, model, eval_set: dict[str, dict]) -> dict:
    keys = sorted(eval_set)
    predicted = predict_values(model, paths_of(project, keys))
    return score_boxes(predicted, [eval_set[k] for k in keys], project.classes)


def _score_version(project: Project, version: str, eval_set: dict[str, dict]) -> dict:
    return _score(project, load_detector(project.registry.checkpoint_path(version)), eval_set)


def decide_promotion(project: Project, challenger: str | None) -> dict:
    """Promote the challenger if it beats the champion on the held-out images that choose
    (``labeling.held_out``): not those the cut is tested on, so the better of two on them is
    no luck the bound then certifies."""
    held_out = labeled_values(project)[1]
    return promote_if_better(
        project, challenger, choosing_part(project, held_out), held_out=len(held_out),
        score=_score_version,
        judge=lambda new, old: ((new["map_50"], new["map"]) > (old["map_50"], old["map"]), ""),
        describe=lambda r: f"mAP@0.5 {r['map_50']:.4f} (mAP {r['map']:.4f})",
        unit="held-out images that choose models (the rest test the cut)")
