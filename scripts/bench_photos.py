"""Real photos with few labels: a linear probe on pretrained MobileNetV2 embeddings (and on
EfficientNet-Lite2's) against the same backbone untrained and the small CNN trained from
scratch (issue 12's P1 on photos).

The photo set is Debian's tuxpaint stamps (``labelloop datasets export photos``; 180 photos,
6 classes, 11-65 per class). Per seed: a stratified test split of 30% of each class, fixed
before anything trains; then k = 5, 10, 20 training labels per class drawn from the rest (a
class with fewer takes all it has). Every method trains on exactly the same labels and is
scored on the same test images. Each seed is printed, then the mean.

Stratified picks need the labels before anyone labels: they are the oracle's row. What a user
can do is pick the same number of items without knowing their classes, at random or by the
typical cold start (``[loop] cold_start = "typical"``: TypiClust on the pretrained embeddings,
``labeling.cold_start``); both rows train the pretrained probe on their picks.

    .venv/bin/python scripts/bench_photos.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from labeling.cold_start import typical_picks
from pipeline.datasets import export_dataset, read_labels_csv
from training.embedding_cache import EmbeddingCache
from training.params import TrainParams
from training.predict import predict
from training.probe import backbone, backbone_id, embed, predict_cached, train_probe
from training.train import train

METHODS = {
    "pretrained probe": TrainParams(model="mobilenet_v2", weights="imagenet", mode="probe"),
    # EfficientNet-Lite2 (ImageNet weights offline too; 260 px): the stronger backbone.
    "Lite2 probe": TrainParams(model="efficientnet_lite2", weights="imagenet", mode="probe"),
    "untrained probe": TrainParams(model="mobilenet_v2", weights=None, mode="probe"),
    "small CNN": TrainParams(model="small_cnn", epochs=30),
}
# Rows that choose which items to label without their classes, for the pretrained probe.
UNSTRATIFIED = ("probe, random picks", "probe, typical picks")


def split(labels: np.ndarray, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices: k per class, test indices: 30% of each class), seeded."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for cls in sorted(set(labels)):
        mine = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(3, int(round(0.3 * len(mine))))
        test_idx += mine[:n_test].tolist()
        train_idx += mine[n_test:n_test + k].tolist()
    return np.array(train_idx), np.array(test_idx)


def score(method: str, params: TrainParams, paths, keys, labels, tr, te, cache_root: Path):
    classes = tuple(sorted(set(labels)))
    if params.mode == "probe":
        cache = EmbeddingCache(cache_root / backbone_id(params))
        model = train_probe([paths[i] for i in tr], [keys[i] for i in tr],
                            [labels[i] for i in tr], classes, params, cache)
        probs = predict_cached(model, [paths[i] for i in te], [keys[i] for i in te], cache).probs
    else:
        model = train([paths[i] for i in tr], [labels[i] for i in tr], classes, params)
        probs = predict(model, [paths[i] for i in te]).probs
    return float(np.mean(np.array(classes)[probs.argmax(1)] == labels[te]))


def pretrained_embeddings(paths, keys, n_classes: int, cache_root: Path) -> np.ndarray:
    """The pretrained backbone's embeddings of every photo, in the cache the probe reads."""
    params = METHODS["pretrained probe"]
    cache = EmbeddingCache(cache_root / backbone_id(params))
    return embed(backbone(params, n_classes), paths, keys, cache)


def unstratified(embeddings: np.ndarray, test: np.ndarray, n: int, seed: int):
    """(n random, n typical) indices among the photos outside the test split."""
    pool = np.setdiff1d(np.arange(len(embeddings)), test)
    rng = np.random.default_rng(seed)
    random = rng.choice(pool, size=n, replace=False)
    return random, pool[typical_picks(embeddings[pool], n, rng=rng)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", nargs="+", type=int, default=[5, 10, 20])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = read_labels_csv(export_dataset("photos", Path(tmp) / "photos"))
        paths = [str(p) for p, _ in pairs]
        keys = [p.name for p, _ in pairs]
        labels = np.array([label for _, label in pairs])
        print(f"{len(paths)} photos, {len(set(labels))} classes")
        embeddings = pretrained_embeddings(paths, keys, len(set(labels)),
                                           Path(tmp) / "embeddings")
        results: dict[tuple[str, int], list[float]] = {}
        for seed in args.seeds:
            for k in args.per_class:
                tr, te = split(labels, seed, k)
                runs = [(m, p, tr) for m, p in METHODS.items()]
                runs += list(zip(UNSTRATIFIED, [METHODS["pretrained probe"]] * 2,
                                 unstratified(embeddings, te, len(tr), seed), strict=True))
                for method, params, chosen in runs:
                    started = time.perf_counter()
                    acc = score(method, TrainParams(**{**params.to_dict(), "seed": seed}),
                                paths, keys, labels, chosen, te, Path(tmp) / "embeddings")
                    results.setdefault((method, k), []).append(acc)
                    print(f"seed {seed} | {k:2d} per class ({len(tr)} labels, {len(te)} test)"
                          f" | {method:20s} | {len(set(labels[chosen])):d} classes picked"
                          f" | accuracy {acc:.3f} | {time.perf_counter() - started:.1f} s",
                          flush=True)
        print("\nmean over seeds " + ", ".join(map(str, args.seeds)))
        print("method               | " + " | ".join(f"{k} per class" for k in args.per_class))
        for method in (*METHODS, *UNSTRATIFIED):
            cells = [f"{np.mean(results[(method, k)]):.3f}" for k in args.per_class]
            print(f"{method:20s} | " + " | ".join(f"{c:>11s}" for c in cells))


if __name__ == "__main__":
    main()
