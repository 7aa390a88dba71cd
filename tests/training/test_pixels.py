"""The pixel cache of the predict step: each item decoded once, later predictions read no file
and equal prediction from the files bit for bit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import training.pixels as pixels
from training.data import TransformConfig
from training.images import ImageError
from training.pixels import pixel_cache, predict_cached_pixels
from training.predict import predict


def _copies(paths, folder):
    folder.mkdir()
    out = []
    for p in paths:
        out.append(folder / p.name)
        shutil.copyfile(p, out[-1])
    return out


def test_pixels_are_decoded_once_and_predict_as_the_files_do(tmp_path, mnist_pngs, mnist_model):
    paths = _copies(mnist_pngs[0][:80], tmp_path / "pool")
    keys = [f"sha256:{p.stem}" for p in paths]
    cache = pixel_cache(tmp_path / "pixels", mnist_model.transform)
    first = predict_cached_pixels(mnist_model, paths[:50], keys[:50], cache, embeddings=True)
    from_files = predict(mnist_model, paths[:50], embeddings=True)
    assert np.array_equal(first.probs, from_files.probs)
    assert np.array_equal(first.embeddings, from_files.embeddings)
    for p in paths[:50]:
        p.unlink()  # the next round reads none of these files again...
    reread = pixel_cache(tmp_path / "pixels", mnist_model.transform)
    again = predict_cached_pixels(mnist_model, paths, keys, reread)  # ...and decodes 30 new
    assert np.array_equal(again.probs[:50], first.probs)
    assert np.array_equal(again.probs[50:], predict(mnist_model, paths[50:]).probs)
    assert len(pixel_cache(tmp_path / "pixels", mnist_model.transform)) == 80


def test_a_corrupt_file_is_named_and_the_chunks_before_it_stay(tmp_path, mnist_pngs, mnist_model,
                                                             monkeypatch):
    paths = _copies(mnist_pngs[0][:30], tmp_path / "pool")
    paths[25].write_bytes(paths[25].read_bytes()[:60])  # a truncated PNG
    keys = [f"sha256:{i}" for i in range(30)]
    monkeypatch.setattr(pixels, "CHUNK", 10)
    cache = pixel_cache(tmp_path / "pixels", mnist_model.transform)
    with pytest.raises(ImageError, match=f"cannot read image .*{paths[25].name}: corrupt"):
        predict_cached_pixels(mnist_model, paths, keys, cache)
    assert pixel_cache(tmp_path / "pixels", mnist_model.transform).missing(keys) == keys[20:]


def test_large_inputs_are_not_kept_and_sizes_never_share():
    grey28 = TransformConfig(1, 28, (0.5,), (0.5,))
    grey32 = TransformConfig(1, 32, (0.5,), (0.5,))
    rgb224 = TransformConfig(3, 224, (0.5,) * 3, (0.5,) * 3)
    assert pixel_cache("/w", rgb224) is None  # 150 KB an item: decoding it is cheap beside
    assert pixel_cache("/w", grey28).folder != pixel_cache("/w", grey32).folder


def test_a_cache_that_cannot_be_written_still_predicts_from_the_files(tmp_path, mnist_pngs,
                                                                       mnist_model):
    paths = _copies(mnist_pngs[0][:20], tmp_path / "pool")
    keys = [f"sha256:{p.stem}" for p in paths]
    (tmp_path / "pixels").write_text("a file where the cache's folder goes")
    cache = pixel_cache(tmp_path / "pixels", mnist_model.transform)
    with pytest.warns(UserWarning, match="pixel cache .* not written .*from the image files"):
        got = predict_cached_pixels(mnist_model, paths, keys, cache, embeddings=True)
    want = predict(mnist_model, paths, embeddings=True)
    assert np.array_equal(got.probs, want.probs)
    assert np.array_equal(got.embeddings, want.embeddings)
