"""The Ray engine's predict step over images in S3 (moto on loopback, a ``ray start`` cluster on
127.0.0.1): its actors read the objects through the same ``training.sources`` as the local
engine, with the cluster's own AWS environment, and give the same probabilities as the local
files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from pipeline.compute import local_cluster, ray_engine

pytest.importorskip("ray.data", reason='the Ray engine needs pip install "labelloop[ray]"')

pytestmark = [pytest.mark.slow, pytest.mark.ray]
WAIT_S = 180


def test_ray_actors_read_s3_objects_and_predict_as_on_local_files(s3, tmp_path):
    from pathlib import Path

    from training.params import TrainParams
    from training.predict import predict
    from training.train import train_arrays

    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)[:120]
    model = train_arrays(images[:100], data.target[:100], [str(d) for d in range(10)],
                         TrainParams(seed=0, min_steps=20, epochs=1))
    local, remote = [], []
    for i, img in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(img, mode="L").save(buffer, "PNG")
        path = tmp_path / f"d{i:03d}.png"
        path.write_bytes(buffer.getvalue())
        local.append(path)
        remote.append(s3.put(f"digits/d{i:03d}.png", buffer.getvalue()))
    keys = [f"k{i}" for i in range(len(remote))]
    # The cluster's processes get the AWS settings from the environment `ray start` runs in
    # (here this test's: AWS_ENDPOINT_URL and dummy keys), never from the driver's messages.
    repo = str(Path(__file__).resolve().parents[2])
    cluster = local_cluster.LocalCluster(cpus=2, env={"PYTHONPATH": repo}, timeout_s=WAIT_S)
    try:
        compute = ray_engine.ComputeSection(engine="ray", address=cluster.address, actors=1,
                                            timeout_s=WAIT_S)
        engine = ray_engine.RayEngine(compute)
        on_ray = engine.predict(model, remote, keys, embeddings=False, progress=False)
    finally:
        cluster.kill()
    on_disk = predict(model, local)
    np.testing.assert_allclose(on_ray.probs, on_disk.probs, rtol=1e-5, atol=1e-6)
    assert (on_ray.probs.argmax(1) == on_disk.probs.argmax(1)).all()
