"""The predict step: the champion's probabilities (and embeddings when the strategy needs them)
for the pool, saved once per round and model version."""

from __future__ import annotations

import numpy as np

from labeling.selections import picks
from labeling.strategies import needs_features
from pipeline.compute.engine import Engine, engine_for
from pipeline.project.project import Project
from pipeline.round.labeled import champion_model_path, items_to_predict, labeled_sets
from pipeline.round.probe import predict_probe
from training.checkpoint import load_checkpoint
from training.pixels import pixel_cache, predict_cached_pixels
from training.predict import Predictions
from training.trained import TrainedModel


def _predictions_file(project: Project, version: str, round_id: int):
    return project.predictions_dir / f"round{round_id}-v{version}.npz"


def predict_pool(project: Project, round_id: int, *, progress: bool) -> dict:
    """Predict every item without a person's label (and the evaluation items, which calibrate
    the thresholds; and the training labels when reviews are on) with the champion; cached per
    round so a resumed round reuses it."""
    found = champion_model_path(project)
    if found is None:
        return {"predicted": 0, "reason": "no champion yet"}
    version, ckpt = found
    out = _predictions_file(project, version, round_id)
    if out.exists():
        with np.load(out) as cached:
            return {"predicted": int(len(cached["keys"])), "version": version, "file": str(out)}
    _, eval_set = labeled_sets(project)
    want_features = needs_features(project.config.loop.strategy)
    # With reviews on, the training labels too: a label the champion contradicts after
    # training on it is a suspect (pipeline/round/review.py). With a strategy on embeddings,
    # too: core-set and ranked batch steer away from what people already labeled.
    everything = project.config.loop.review_share > 0 or want_features
    items = items_to_predict(project, eval_set, everything=everything)
    model = load_checkpoint(ckpt)
    config = project.config
    engine = engine_for(config.compute, log=config.workspace_dir / "logs" / "ray.log")
    preds = predict_files(project, model, [i.path for i in items], [i.key for i in items],
                          embeddings=want_features, progress=progress, engine=engine,
                          keep_pixels=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, keys=np.array([i.key for i in items]), probs=preds.probs,
             embeddings=preds.embeddings if want_features else np.zeros((len(items), 0)))
    tmp.replace(out)
    return {"predicted": len(items), "version": version, "file": str(out)}


def predict_files(project: Project, model: TrainedModel, paths, keys, *, embeddings: bool,
                  progress: bool, engine: Engine | None = None,
                  keep_pixels: bool = False) -> Predictions:
    """``model``'s predictions for image files (item keys alongside: the probe's embedding
    cache is keyed by them, Ray's rows carry them): the one prediction path of rounds (on
    ``engine``, the config's) and of ``labelloop serve`` (here, for latency).

    ``keep_pixels`` (the round's steps, which predict the same pool and held-out items every
    round): on this machine, a small model's input pixels are read from the workspace's pixel
    cache, decoded into it the first time (``training.pixels``)."""
    if model.params.mode == "probe":  # the model's own mode, whatever the config says now
        return predict_probe(project, model, paths, keys, progress=progress, engine=engine)
    if engine is not None and engine.name != "local":
        return engine.predict(model, paths, keys, embeddings=embeddings, progress=progress)
    cache = pixel_cache(project.pixels_dir, model.transform) if keep_pixels else None
    if cache is not None:
        return predict_cached_pixels(model, paths, keys, cache, embeddings=embeddings,
                                     progress=progress)
    return project.task.predict(model, paths, embeddings=embeddings, progress=progress)


def load_predictions(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return list(data["keys"]), data["probs"], data["embeddings"]


def saved_files(project: Project, round_id: int | str = "*", *, suffix: str = ".npz") -> list:
    """The finished predictions files (of one round, or all), oldest first: by round, then
    model version, as numbers (a copied or restored workspace keeps no file times).
    ``suffix``: ``.boxes.json`` for detection's."""
    def order(f):
        round_part, version = f.name[len("round"):-len(suffix)].split("-v", 1)
        return int(round_part), int(version) if version.isdigit() else -1, version

    return sorted((f for f in project.predictions_dir.glob(f"round{round_id}-v*{suffix}")
                   if not f.name.endswith(f".tmp{suffix}")), key=order)


def latest_probs(project: Project) -> dict[str, np.ndarray]:
    """Item key -> class probabilities in the newest predictions file (empty before any)."""
    files = saved_files(project)
    if not files:
        return {}
    keys, probs, _ = load_predictions(files[-1])
    return dict(zip(keys, probs, strict=True))


def by_choosing_round(project: Project, keys) -> dict[int, list[str]]:
    """Round id -> the keys among ``keys`` that the round picked for people."""
    wanted = set(keys)
    out: dict[int, list[str]] = {}
    for key, pick in picks(project.store).items():
        if key in wanted and pick.round_id is not None:
            out.setdefault(pick.round_id, []).append(key)
    return out


def choosing_probs(project: Project, keys) -> dict[str, np.ndarray]:
    """Item key -> the class probabilities that the round which picked the item predicted for
    it (made while it had no label: out-of-sample), for the keys a round after the first
    picked (the first round's random picks had no model)."""
    out: dict[str, np.ndarray] = {}
    for round_id, chosen in by_choosing_round(project, keys).items():
        files = saved_files(project, round_id)
        if not files:
            continue
        names, probs, _ = load_predictions(files[-1])
        row = {k: i for i, k in enumerate(names)}
        out.update({k: probs[row[k]] for k in chosen if k in row})
    return out
