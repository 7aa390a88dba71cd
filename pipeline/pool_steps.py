"""Round steps over the pool: predict it, auto-accept the confident, pick items for people."""

from __future__ import annotations

import numpy as np

from labeling.autoaccept import (
    accept_confident,
    choose_thresholds,
    pooled_thresholds,
    precision_interval,
)
from labeling.selections import Pick, picks, record_picks
from labeling.store import NewLabel
from labeling.strategies import select_for_review
from pipeline.model_steps import champion_model_path, labeled_sets
from pipeline.project import Project
from training.checkpoint import load_checkpoint
from training.predict import predict


def _predictions_file(project: Project, version: str, round_id: int):
    return project.predictions_dir / f"round{round_id}-v{version}.npz"


def predict_pool(project: Project, round_id: int, *, progress: bool) -> dict:
    """Predict every item without a person's label (and the evaluation items, which calibrate
    the thresholds) with the champion; cached per round so a resumed round reuses it."""
    found = champion_model_path(project)
    if found is None:
        return {"predicted": 0, "reason": "no champion yet"}
    version, ckpt = found
    out = _predictions_file(project, version, round_id)
    if out.exists():
        with np.load(out) as cached:
            return {"predicted": int(len(cached["keys"])), "version": version, "file": str(out)}
    human = project.store.current_labels(sources=("human", "seed"))
    _, eval_set = labeled_sets(project)
    items = [i for i in project.store.items(status="ok")
             if i.key not in human or i.key in eval_set]
    model = load_checkpoint(ckpt)
    want_features = project.config.loop.strategy == "ranked_batch"
    preds = predict(model, [i.path for i in items], embeddings=want_features, progress=progress)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, keys=np.array([i.key for i in items]), probs=preds.probs,
             embeddings=preds.embeddings if want_features else np.zeros((len(items), 0)))
    tmp.replace(out)
    return {"predicted": len(items), "version": version, "file": str(out)}


def load_predictions(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return list(data["keys"]), data["probs"], data["embeddings"]


def auto_accept(project: Project, round_id: int, predicted: dict) -> dict:
    """Choose per-class thresholds on the held-out human labels and accept machine labels
    above them; machine labels of earlier models that the champion no longer backs are
    withdrawn (thresholds belong to a model version)."""
    if "file" not in predicted:
        return {"accepted": 0, "reason": predicted.get("reason", "no predictions")}
    loop = project.config.loop
    classes = list(project.classes)
    keys, probs, _ = load_predictions(predicted["file"])
    index = {k: i for i, k in enumerate(keys)}
    _, eval_set = labeled_sets(project)
    val_keys = [k for k in eval_set if k in index]
    val_probs = probs[[index[k] for k in val_keys]] if val_keys else np.zeros((0, len(classes)))
    val_y = np.array([classes.index(eval_set[k]) for k in val_keys], dtype=int)
    if loop.threshold_mode == "pooled":
        thresholds = pooled_thresholds(
            val_probs, val_y, classes, target_precision=loop.target_precision,
            confidence=loop.confidence_level, min_points=loop.min_validation_points)
    else:
        thresholds = choose_thresholds(
            val_probs, val_y, classes, target_precision=loop.target_precision,
            confidence=loop.confidence_level, min_points=loop.min_validation_points,
            split_budget=loop.split_error_budget)
    human = project.store.current_labels(sources=("human", "seed"))
    pool = [i for i, k in enumerate(keys) if k not in human]
    pool_probs = probs[pool]
    mask = accept_confident(pool_probs, thresholds) if len(pool) else np.zeros(0, bool)
    version = predicted["version"]
    new_labels = [
        NewLabel(keys[pool[j]], classes[int(pool_probs[j].argmax())], "machine",
                 who="labelloop", model_version=version,
                 confidence=float(pool_probs[j].max()), round_id=round_id)
        for j in np.flatnonzero(mask)
    ]
    result = project.store.add_labels(new_labels)
    accepted_keys = {lab.key for lab in new_labels}
    withdrawn = project.store.retract_labels(
        [k for k, lab in project.store.current_labels(sources=("machine",)).items()
         if k not in accepted_keys], source="machine")
    machine_now = project.store.current_labels(sources=("machine",))
    pool_size = len({i.key for i in project.store.items(status="ok")} - human.keys())
    return {
        "thresholds": thresholds.to_dict(),
        "accepted": len(accepted_keys), "written": len(result.written),
        "withdrawn": withdrawn, "machine_labels": len(machine_now),
        "coverage": len(machine_now) / max(1, pool_size),
        "audit": audited_precision(project),
    }


def audited_precision(project: Project) -> dict:
    """Precision of auto-accepted labels measured on random audit picks that people labeled."""
    human = project.store.current_labels(sources=("human",))
    audited = [(p.machine_label, human[k].label) for k, p in picks(project.store).items()
               if p.reason == "audit" and p.machine_label is not None and k in human]
    correct = sum(m == h for m, h in audited)
    lo, hi = precision_interval(correct, len(audited))
    return {"n": len(audited), "correct": correct,
            "precision": correct / len(audited) if audited else None, "interval": [lo, hi]}


def select_batch(project: Project, round_id: int, predicted: dict) -> dict:
    """Pick the next items for people: a random audit share plus the strategy's choice, or a
    random cold-start batch before there is a model. Recorded before anything is pushed."""
    loop = project.config.loop
    store = project.store
    rng = np.random.default_rng([project.config.training.seed, round_id])
    human = store.current_labels(sources=("human", "seed"))
    taken = set(picks(store))
    skipped = {i.key for i in store.items(status="skipped")}
    candidates = [i.key for i in store.items(status="ok")
                  if i.key not in human and i.key not in taken and i.key not in skipped]
    if not candidates:
        return {"picked": 0, "reason": "nothing left to ask about"}
    if "file" not in predicted:
        n = min(loop.initial_random, len(candidates))
        chosen = rng.choice(len(candidates), size=n, replace=False)
        n_hold = int(round(n * loop.initial_holdout))
        new = [Pick(candidates[j], "random", holdout=r < n_hold) for r, j in enumerate(chosen)]
    else:
        new = _audit_and_strategy(project, candidates, predicted, rng)
    added = record_picks(store, new, round_id=round_id)
    reasons = {r: sum(p.reason == r for p in new) for r in ("random", "audit", "strategy")}
    return {"picked": len(added), **reasons}


def _audit_and_strategy(project, candidates, predicted, rng) -> list[Pick]:
    loop = project.config.loop
    n = min(loop.batch_size, len(candidates))
    n_audit = int(round(n * loop.audit_fraction))
    machine = project.store.current_labels(sources=("machine",))
    audit_idx = rng.choice(len(candidates), size=n_audit, replace=False)
    audit = [candidates[j] for j in audit_idx]
    out = [Pick(k, "audit", holdout=True,
                machine_label=machine[k].label if k in machine else None,
                machine_version=machine[k].model_version if k in machine else None)
           for k in audit]
    keys, probs, feats = load_predictions(predicted["file"])
    index = {k: i for i, k in enumerate(keys)}
    audit_set = set(audit)
    # Machine-accepted items are confident by construction; people get the uncertain rest.
    rest = [k for k in candidates if k not in audit_set and k in index and k not in machine]
    n_strategy = min(n - n_audit, len(rest))
    if n_strategy > 0:
        rows = [index[k] for k in rest]
        features = feats[rows] if feats.shape[1] else None
        chosen = select_for_review(probs[rows], n_strategy, strategy=loop.strategy, rng=rng,
                                   features=features)
        out += [Pick(rest[j], "strategy") for j in chosen]
    return out
