"""Offline active-learning simulation: an oracle answers from ground truth.

Each step trains with the same training code the loop uses, predicts the pool, evaluates on a
fixed held-out test split, and asks the query strategy for the next batch. The test split is
drawn with a fixed seed, so every strategy and seed is measured on the same images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from labeling.strategies import list_strategies, needs_features, select_for_review
from pipeline.datasets import load_dataset_arrays
from pipeline.files import write_text_atomic
from training.evaluate import evaluate
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays

TEST_SPLIT_SEED = 12345


@dataclass(frozen=True)
class SimulationSettings:
    dataset: str = "mnist"
    strategy: str = "margin"
    seed: int = 0
    initial: int = 20
    batch: int = 20
    budget: int = 1000
    params: TrainParams = TrainParams()


def test_split(labels: np.ndarray, dataset: str) -> np.ndarray:
    """Indices of the fixed test split: 1,000 images for mnist, 20% for digits, stratified."""
    n_test = 1000 if dataset == "mnist" else int(round(0.2 * len(labels)))
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    classes = np.unique(labels)
    picked = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        share = int(round(n_test * len(members) / len(labels)))
        picked.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def simulate(
    settings: SimulationSettings,
    *,
    on_step: Callable[[dict], None] | None = None,
) -> dict:
    """Run one active-learning simulation; returns the results dict written to results.json."""
    if settings.strategy not in list_strategies():
        raise ValueError(
            f"unknown strategy {settings.strategy!r}; valid: {', '.join(list_strategies())}")
    if settings.initial < 1 or settings.batch < 1 or settings.budget < settings.initial:
        raise ValueError("need initial >= 1, batch >= 1 and budget >= initial")
    images, labels = load_dataset_arrays(settings.dataset)
    classes = sorted({str(v) for v in labels}, key=lambda c: (len(c), c))
    label_idx = np.array([classes.index(str(v)) for v in labels])
    test = test_split(label_idx, settings.dataset)
    pool = np.setdiff1d(np.arange(len(labels)), test)
    budget = min(settings.budget, len(pool))

    rng = np.random.default_rng(settings.seed)
    labeled = rng.choice(pool, size=min(settings.initial, budget), replace=False)
    params = replace(settings.params, seed=settings.seed)
    need_features = needs_features(settings.strategy)
    curve = []
    while True:
        model = train_arrays(images[labeled], label_idx[labeled], classes, params)
        test_pred = predict_arrays(model, images[test])
        acc = evaluate(test_pred.probs, label_idx[test], classes).accuracy
        point = {"labels": int(len(labeled)), "accuracy": float(acc)}
        curve.append(point)
        if on_step is not None:
            on_step(point)
        if len(labeled) >= budget:
            break
        unlabeled = np.setdiff1d(pool, labeled)
        n = min(settings.batch, budget - len(labeled), len(unlabeled))
        pool_pred = predict_arrays(model, images[unlabeled], embeddings=need_features)
        extra = {}
        if need_features:
            extra["labeled_features"] = predict_arrays(
                model, images[labeled], embeddings=True).embeddings
        picked = select_for_review(pool_pred.probs, n, strategy=settings.strategy, rng=rng,
                                   features=pool_pred.embeddings, **extra)
        labeled = np.concatenate([labeled, unlabeled[picked]])
    return {"dataset": settings.dataset, "strategy": settings.strategy, "seed": settings.seed,
            "initial": settings.initial, "batch": settings.batch, "test_size": int(len(test)),
            "train_params": params.to_dict(), "curve": curve}


def labels_to_reach(curve: list[dict], accuracy: float) -> int | None:
    """The first label count at which the curve reaches ``accuracy``; None if it never does."""
    for point in curve:
        if point["accuracy"] >= accuracy:
            return point["labels"]
    return None


def write_results(results: dict, out: Path) -> None:
    """Write results.json atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(results, indent=2))


def plot_curves(runs: list[dict], out: Path, *, title: str = "") -> None:
    """One PNG: test accuracy against human labels, mean and min-max spread per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy in sorted({r["strategy"] for r in runs}):
        curves = [r["curve"] for r in runs if r["strategy"] == strategy]
        length = min(len(c) for c in curves)
        x = np.array([p["labels"] for p in curves[0][:length]])
        ys = np.array([[p["accuracy"] for p in c[:length]] for c in curves])
        ax.plot(x, ys.mean(axis=0), label=f"{strategy} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), alpha=0.2)
    for level in (0.90, 0.95):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("human labels")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Learning curves")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
