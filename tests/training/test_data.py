"""Transforms and datasets: what the model is fed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import (
    ArrayDataset,
    ImageFileDataset,
    TransformConfig,
    augment,
    load_arrays,
    normalize,
)

GRAY28 = TransformConfig(channels=1, image_size=28, mean=(0.5,), std=(0.5,))


def test_transform_config_round_trips_through_a_dict():
    tconf = TransformConfig(3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert TransformConfig.from_dict(tconf.to_dict()) == tconf
    assert tconf.to_dict()["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize(
    "kwargs", [dict(channels=2), dict(image_size=4), dict(mean=(0.5, 0.5)), dict(std=(0.0,))]
)
def test_transform_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        TransformConfig(**{**GRAY28.to_dict(), **kwargs})


def test_small_digits_are_upscaled_to_the_model_size(digits):
    images, _ = digits
    pixels = ArrayDataset(images[:10], GRAY28).images
    assert pixels.shape == (10, 1, 28, 28)
    assert pixels.dtype == torch.uint8
    # Still the same digit: the brightest region stays where it was.
    assert pixels[0].float().mean() == pytest.approx(images[0].astype(float).mean(), rel=0.15)


def test_gray_and_color_arrays_are_converted_to_the_models_channels(mnist):
    images, _ = mnist
    rgb = np.repeat(images[:4, :, :, None], 3, axis=3)
    as_gray = ArrayDataset(rgb, GRAY28).images
    assert torch.equal(as_gray, ArrayDataset(images[:4], GRAY28).images)
    color = TransformConfig(3, 28, (0.5,) * 3, (0.5,) * 3)
    assert ArrayDataset(images[:4], color).images.shape == (4, 3, 28, 28)


def test_arrays_must_be_uint8(mnist):
    images, _ = mnist
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(images[:4].astype(np.float32), GRAY28)


def test_load_arrays_decodes_pngs_to_the_same_pixels(mnist_pngs):
    paths, images, _ = mnist_pngs
    loaded = load_arrays(paths[:50], GRAY28, num_workers=2)
    assert loaded.shape == (50, 28, 28)
    assert np.array_equal(loaded, images[:50])


def test_file_dataset_reports_unreadable_files_instead_of_raising(tmp_path, mnist_pngs):
    paths, _, _ = mnist_pngs
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    dataset = ImageFileDataset([paths[0], bad], GRAY28)
    assert dataset[0][1] == ""
    assert "not an image" in dataset[1][1]


def test_normalize_maps_pixels_with_mean_and_std():
    batch = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3)
    out = normalize(batch, GRAY28)
    assert torch.allclose(out.flatten(), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]), atol=1e-6)


def test_augment_is_seeded_and_changes_only_when_asked(mnist):
    images, _ = mnist
    x = normalize(ArrayDataset(images[:16], GRAY28).images, GRAY28)
    same_a = augment(x, 0.5, generator=torch.Generator().manual_seed(3))
    same_b = augment(x, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(same_a, same_b)
    assert same_a.shape == x.shape
    assert not torch.allclose(same_a, x)
    assert torch.equal(augment(x, 0.0, generator=torch.Generator()), x)
    # Small transforms: the digit stays mostly in place.
    assert torch.corrcoef(torch.stack([same_a.flatten(), x.flatten()]))[0, 1] > 0.5
