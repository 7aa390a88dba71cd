"""Batch prediction over files and arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.images import ImageError, open_image
from training.predict import predict, predict_arrays


def test_files_and_arrays_give_the_same_predictions(mnist_pngs, mnist_model):
    paths, _, _ = mnist_pngs
    decoded = np.stack([np.asarray(open_image(p, channels=1)) for p in paths])
    from_files = predict(mnist_model, paths, batch_size=64, num_workers=2, embeddings=True)
    from_arrays = predict_arrays(mnist_model, decoded, batch_size=64, embeddings=True)
    assert np.array_equal(from_files.probs, from_arrays.probs)
    assert np.array_equal(from_files.logits, from_arrays.logits)
    assert np.array_equal(from_files.embeddings, from_arrays.embeddings)


def test_outputs_have_the_documented_shapes_and_types(mnist, mnist_model):
    images, _ = mnist
    preds = predict_arrays(mnist_model, images[:70], batch_size=32, embeddings=True)
    assert preds.probs.shape == preds.logits.shape == (70, 10)
    assert preds.embeddings.shape == (70, mnist_model.module.embedding_dim)
    assert preds.probs.dtype == preds.embeddings.dtype == np.float32
    assert np.allclose(preds.probs.sum(1), 1, atol=1e-5)
    assert predict_arrays(mnist_model, images[:5]).embeddings is None


def test_rows_stay_in_input_order_across_batches(mnist, mnist_model):
    images, _ = mnist
    whole = predict_arrays(mnist_model, images[:50], batch_size=50).logits
    reversed_in_batches = predict_arrays(mnist_model, images[:50][::-1].copy(), batch_size=7)
    assert np.allclose(reversed_in_batches.logits[::-1], whole, atol=1e-5)


def test_temperature_softens_probabilities_but_keeps_the_top_class(mnist, mnist_model):
    images, _ = mnist
    plain = predict_arrays(mnist_model, images[:100])
    warm = predict_arrays(dataclasses.replace(mnist_model, temperature=3.0), images[:100])
    expected = torch.softmax(torch.from_numpy(plain.logits) / 3.0, 1).numpy()
    assert np.allclose(warm.probs, expected, atol=1e-6)
    assert np.array_equal(warm.probs.argmax(1), plain.probs.argmax(1))
    assert warm.probs.max(1).mean() < plain.probs.max(1).mean()


@pytest.mark.parametrize("position", [3, 40])  # read by this process / by a worker
def test_corrupt_file_is_named(tmp_path, mnist_pngs, mnist_model, position):
    paths, _, _ = mnist_pngs
    bad = tmp_path / "scan_0042.png"
    bad.write_bytes(paths[0].read_bytes()[:60])  # a truncated PNG
    files = [*paths[:position], bad, *paths[position:60]]
    with pytest.raises(ImageError, match="cannot read image .*scan_0042.png: corrupt"):
        predict(mnist_model, files, batch_size=16, num_workers=2)


def test_images_of_another_size_are_resized(digits, mnist_model):
    images, _ = digits  # 8x8
    preds = predict_arrays(mnist_model, images[:10])
    assert preds.probs.shape == (10, 10)


def test_progress_off_prints_nothing(mnist_pngs, mnist_model, capsys):
    paths, _, _ = mnist_pngs
    predict(mnist_model, paths[:20], num_workers=0, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
