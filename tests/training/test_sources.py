"""Images in S3 (a local moto endpoint): read through ``training.sources`` by ``open_image``, so
training's and prediction's readers (DataLoader workers included) see what local files give."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import training.sources
from tests.ports import free_port
from training.images import ImageError, open_image
from training.predict import predict
from training.sources import RemoteUnavailable, is_remote, presigned_url, read_bytes, split_s3


def test_s3_paths_are_told_from_local_ones():
    assert is_remote("s3://bucket/a/b.png") and not is_remote("/data/s3://x")
    assert split_s3("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    with pytest.raises(ValueError, match="names no bucket"):
        split_s3("s3:///a.png")


@pytest.mark.parametrize("num_workers", [0, 2])  # read by this process / by forked workers
def test_prediction_over_s3_objects_equals_prediction_over_local_files(
        s3, mnist_pngs, mnist_model, num_workers):
    paths, _, _ = mnist_pngs
    paths = paths[:80]
    remote = [s3.put(f"digits/{p.name}", p.read_bytes()) for p in paths]
    local = predict(mnist_model, paths, batch_size=32, num_workers=num_workers)
    from_s3 = predict(mnist_model, remote, batch_size=32, num_workers=num_workers)
    assert np.array_equal(local.probs, from_s3.probs)
    assert np.array_equal(np.asarray(open_image(remote[0], channels=1)),
                          np.asarray(open_image(paths[0], channels=1)))


def test_a_missing_or_corrupt_object_is_named(s3, mnist_pngs, mnist_model):
    paths, _, _ = mnist_pngs
    good = [s3.put(f"d/{p.name}", p.read_bytes()) for p in paths[:5]]
    with pytest.raises(ImageError, match="object not found"):
        open_image(f"s3://{s3.name}/d/gone.png")
    bad = s3.put("d/bad.png", paths[0].read_bytes()[:60])
    with pytest.raises(ImageError, match=r"cannot read image s3://.*/d/bad.png: corrupt"):
        predict(mnist_model, [*good, bad], batch_size=4)


def test_presigned_url_fetches_the_bytes_without_credentials(s3):
    path = s3.put("x/one.png", b"\x89PNG some bytes")
    url = presigned_url(path, expires_s=3600)
    assert url.startswith(s3.endpoint) and "X-Amz-Signature" in url
    response = httpx.get(url)  # no AWS credentials: the signature is the permission
    assert response.status_code == 200 and response.content == read_bytes(path)


def test_endpoint_down_is_not_an_image_fault(s3, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setattr(training.sources, "_clients", {})
    with pytest.raises(RemoteUnavailable, match="endpoint cannot be reached.*AWS_ENDPOINT_URL"):
        open_image(f"s3://{s3.name}/any.png")
