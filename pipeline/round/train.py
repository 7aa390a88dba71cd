"""The train step: train (or find, after a crash) a challenger on the human labels, calibrate
it on the held-out ones that choose models (``labeling.held_out``: the temperature is fitted to
them, so the thresholds are not tested on them), and register it."""

from __future__ import annotations

import json

from pipeline.files import write_text_atomic
from pipeline.project.project import Project
from pipeline.round.labeled import (
    choosing_part,
    class_indices,
    labeled_sets,
    paths_of,
)
from pipeline.round.predict import predict_files
from pipeline.round.probe import round_params, train_probe
from pipeline.round.retrain import run_snapshot, why_not_retrain
from training.calibrate import calibrate_logits
from training.checkpoint import load_checkpoint, save_checkpoint
from training.evaluate import evaluate
from training.predict import probabilities

# Below this many held-out items that choose, temperature scaling would fit noise.
MIN_CALIBRATION_ITEMS = 30


def train_challenger(project: Project, round_id: int, *, progress: bool) -> dict:
    """Train (or find, after a crash) the challenger for the current labels; register it."""
    train_set, eval_set = labeled_sets(project)
    classes_present = {label for label in train_set.values()}
    if len(classes_present) < 2:
        return {"trained": False, "reason": f"only {len(train_set)} training labels, "
                                            f"{len(classes_present)} class(es)"}
    params = round_params(project, len(train_set))
    snapshot = run_snapshot(train_set, params)
    if (reason := why_not_retrain(project, snapshot, train_set)) is not None:
        return {"trained": False, "reason": reason}
    ckpt = project.models_dir / f"{snapshot}.pt"
    if not ckpt.exists():
        write_text_atomic(project.models_dir / f"{snapshot}.labels.json",
                          json.dumps(train_set, sort_keys=True))
        keys = sorted(train_set)
        if params.mode == "probe":
            model = train_probe(project, paths_of(project, keys), keys,
                                [train_set[k] for k in keys], params, progress=progress)
        else:
            model = project.task.train(paths_of(project, keys), [train_set[k] for k in keys],
                                       project.classes, params, progress=progress)
        # The held-out items that choose: what the temperature is fitted to, and what the
        # version's eval figures (`labelloop models list`) are measured on, so that a version
        # picked by hand from them is picked on the items promotion uses, not on the thresholds'.
        eval_set = choosing_part(project, eval_set)
        metrics = {"n_train": len(keys), "n_eval": len(eval_set)}
        if eval_set:
            eval_keys = sorted(eval_set)
            eval_paths = paths_of(project, eval_keys)
            # Through the caches (probe: embeddings; small inputs: pixels): no image is
            # decoded again for a round that only retrains.
            logits = predict_files(project, model, eval_paths, eval_keys, embeddings=False,
                                   progress=False, keep_pixels=True).logits
            if len(eval_keys) >= MIN_CALIBRATION_ITEMS:
                fitted = calibrate_logits(model, logits, [eval_set[k] for k in eval_keys])
                # Soften only. On a few hundred held-out items a good model is often perfectly
                # right, and the NLL then drives T toward 0: every confidence becomes 1.0 and
                # the thresholds lose the ranking they need. Nets trained with cross-entropy
                # err on the overconfident side (Guo et al. 2017), which T >= 1 corrects.
                model.temperature = max(1.0, fitted)
                metrics["temperature_fitted"] = fitted
            probs = probabilities(logits, model.temperature)
            report = evaluate(probs, class_indices(project, eval_set, eval_keys), project.classes)
            metrics.update({"eval_accuracy": report.accuracy, "eval_macro_f1": report.macro_f1,
                            "eval_ece": report.ece})
        model.metrics.update(metrics)
        save_checkpoint(model, ckpt)
    model = load_checkpoint(ckpt)
    metrics = {k: float(v) for k, v in model.metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    version = project.registry.register(
        ckpt, params=model.params.to_dict(), metrics=metrics, snapshot=snapshot,
        round_id=round_id, tags={"temperature": str(model.temperature)})
    return {"trained": True, "version": version, "snapshot": snapshot,
            "n_train": int(metrics.get("n_train", len(train_set)))}


