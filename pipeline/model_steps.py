"""Round steps that train, evaluate and promote models.

Promotion rule: the challenger replaces the champion only if, on the same random held-out
human-labeled evaluation set, its accuracy is higher, or equal with a lower log-loss. Accuracy
on random human labels is what users notice; comparing both models on the same items removes
the luck of the draw between evaluation sets; log-loss breaks ties because a model trained on
more labels that is as accurate but better calibrated gives better thresholds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from labeling.selections import picks
from pipeline.files import write_text_atomic
from pipeline.project import Project
from training.calibrate import calibrate
from training.checkpoint import load_checkpoint, save_checkpoint
from training.evaluate import evaluate
from training.predict import predict
from training.train import train

# Below this many held-out items, temperature scaling would fit noise.
MIN_CALIBRATION_ITEMS = 30


def labeled_sets(project: Project) -> tuple[dict[str, str], dict[str, str]]:
    """(training labels, evaluation labels): key -> class, human and seed labels only
    (machine labels join training only if the config says so). Evaluation items are the
    random held-out picks; they never train a model."""
    store = project.store
    ok = {i.key: i for i in store.items(status="ok")}
    current = store.current_labels()
    holdout = set(picks(store, holdout=True))
    use_machine = project.config.loop.train_on_machine_labels
    train_set, eval_set = {}, {}
    for key, lab in current.items():
        if key not in ok:
            continue
        if lab.source in ("human", "seed"):
            (eval_set if key in holdout else train_set)[key] = lab.label
        elif use_machine and key not in holdout:
            train_set[key] = lab.label
    return train_set, eval_set


def snapshot_hash(labels: dict[str, str]) -> str:
    """Content hash of the exact training labels (item keys and classes)."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(f"{key}\t{labels[key]}\n".encode())
    return digest.hexdigest()[:16]


def paths_of(project: Project, keys) -> list[str]:
    items = {i.key: i.path for i in project.store.items()}
    return [items[k] for k in keys]


def train_challenger(project: Project, round_id: int, *, progress: bool) -> dict:
    """Train (or find, after a crash) the challenger for the current labels; register it."""
    train_set, eval_set = labeled_sets(project)
    champion = project.registry.champion()
    classes_present = {label for label in train_set.values()}
    if len(classes_present) < 2:
        return {"trained": False, "reason": f"only {len(train_set)} training labels, "
                                            f"{len(classes_present)} class(es)"}
    snapshot = snapshot_hash(train_set)
    if champion is not None:
        if champion.snapshot == snapshot:
            return {"trained": False, "reason": "no new labels since the champion"}
        new = changed_labels(project, champion.snapshot, train_set)
        if new < project.config.loop.min_new_labels:
            return {"trained": False, "reason": f"{new} new labels < min_new_labels "
                                                f"{project.config.loop.min_new_labels}"}
    ckpt = project.models_dir / f"{snapshot}.pt"
    if not ckpt.exists():
        write_text_atomic(project.models_dir / f"{snapshot}.labels.json",
                          json.dumps(train_set, sort_keys=True))
        keys = sorted(train_set)
        model = train(paths_of(project, keys), [train_set[k] for k in keys], project.classes,
                      project.train_params(), progress=progress)
        metrics = {"n_train": len(keys), "n_eval": len(eval_set)}
        if len(eval_set) >= MIN_CALIBRATION_ITEMS:
            eval_keys = sorted(eval_set)
            eval_paths = paths_of(project, eval_keys)
            fitted = calibrate(model, eval_paths, [eval_set[k] for k in eval_keys])
            # Soften only. On a few hundred held-out items a good model is often perfectly
            # right, and the NLL then drives T toward 0: every confidence becomes 1.0 and the
            # thresholds lose the ranking they need. Nets trained with cross-entropy err on
            # the overconfident side (Guo et al. 2017), which T >= 1 corrects.
            model.temperature = max(1.0, fitted)
            metrics["temperature_fitted"] = fitted
            probs = predict(model, eval_paths).probs
            report = evaluate(probs, _indices(project, eval_set, eval_keys), project.classes)
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


def changed_labels(project: Project, snapshot: str | None, train_set: dict[str, str]) -> int:
    """How many training labels are new or different since the model trained on ``snapshot``
    (corrections count as much as new labels)."""
    path = project.models_dir / f"{snapshot}.labels.json"
    if snapshot is None or not path.exists():
        return len(train_set)
    before = json.loads(path.read_text())
    return sum(before.get(k) != v for k, v in train_set.items())


def _indices(project: Project, labels: dict[str, str], keys) -> np.ndarray:
    return np.array([project.classes.index(labels[k]) for k in keys])


def score_on_eval(project: Project, version: str, eval_set: dict[str, str]) -> dict:
    """Accuracy and log-loss of a registered version on the evaluation set."""
    keys = sorted(eval_set)
    model = load_checkpoint(project.registry.checkpoint_path(version))
    probs = predict(model, paths_of(project, keys)).probs
    y = _indices(project, eval_set, keys)
    report = evaluate(probs, y, project.classes)
    log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return {"accuracy": report.accuracy, "log_loss": log_loss, "n": len(keys)}


def decide_promotion(project: Project, challenger: str | None) -> dict:
    """Apply the promotion rule (module docstring) and promote if it says so."""
    registry = project.registry
    champion = registry.champion()
    if challenger is None:
        return {"promoted": False, "reason": "no challenger this round",
                "champion": champion.version if champion else None}
    if champion is not None and champion.version == challenger:
        return {"promoted": False, "reason": "already champion", "champion": challenger}
    if champion is None:
        registry.promote(challenger, reason="first model")
        return {"promoted": True, "reason": "first model", "champion": challenger}
    _, eval_set = labeled_sets(project)
    if not eval_set:
        return {"promoted": False, "reason": "no held-out human labels to compare on",
                "champion": champion.version}
    new = score_on_eval(project, challenger, eval_set)
    old = score_on_eval(project, champion.version, eval_set)
    better = new["accuracy"] > old["accuracy"] or (
        new["accuracy"] == old["accuracy"] and new["log_loss"] < old["log_loss"])
    reason = (f"v{challenger} accuracy {new['accuracy']:.4f} (log-loss {new['log_loss']:.4f}) vs "
              f"champion v{champion.version} {old['accuracy']:.4f} ({old['log_loss']:.4f}) "
              f"on {new['n']} held-out human labels")
    if better:
        registry.promote(challenger, reason=reason)
    return {"promoted": better, "reason": reason,
            "champion": challenger if better else champion.version,
            "challenger_score": new, "champion_score": old}


def champion_model_path(project: Project) -> tuple[str, Path] | None:
    champion = project.registry.champion()
    if champion is None:
        return None
    return champion.version, project.registry.checkpoint_path(champion.version)
