"""``[compute]``: the engine a config names, what it refuses, and what a Ray cluster that
cannot be reached gets (no Ray started here: the error comes before any)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline.compute.engine import ComputeError, LocalEngine, engine_for
from pipeline.compute.local_cluster import free_port
from pipeline.compute.ray_engine import RayEngine
from pipeline.project.config import ComputeSection, ConfigError, load_config, render_config
from training.params import TrainParams
from training.train import train_arrays


def _config(tmp_path, compute: str, task: str = "classification"):
    text = render_config("compute-test", ["a", "b"], tmp_path, task=task)
    assert "[compute]\nengine = \"local\"\n" in text  # a new project spells the default out
    text = text[:text.index("[compute]")] + f"[compute]\n{compute}\n"  # the last section
    (tmp_path / "labelloop.toml").write_text(text)
    return load_config(tmp_path)


def test_the_config_names_the_engine_and_refuses_what_cannot_run(tmp_path):
    assert isinstance(engine_for(_config(tmp_path, 'engine = "local"').compute), LocalEngine)
    cfg = _config(tmp_path, 'engine = "ray"\naddress = "10.0.0.5:6379"\nactors = 4')
    engine = engine_for(cfg.compute)
    assert isinstance(engine, RayEngine)
    assert (cfg.compute.address, cfg.compute.actors) == ("10.0.0.5:6379", 4)
    with pytest.raises(ConfigError, match="compute.engine"):
        _config(tmp_path, 'engine = "spark"')
    with pytest.raises(ConfigError, match="compute.actors"):
        _config(tmp_path, 'engine = "ray"\nactors = 0')
    with pytest.raises(ConfigError, match=r'\[compute\] engine must be "local"'):
        _config(tmp_path, 'engine = "ray"', task="detection")


@pytest.fixture(scope="module")
def model():
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)[:40]
    return train_arrays(images, data.target[:40], [str(d) for d in range(10)],
                        TrainParams(seed=0, min_steps=2, epochs=1))


def test_an_unreachable_cluster_is_one_clear_error_at_once(model, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    engine = RayEngine(ComputeSection(engine="ray", address=address, timeout_s=60))
    started = time.monotonic()
    with pytest.raises(ComputeError, match=f"cannot reach the Ray cluster at .*{address}"):
        engine.predict(model, [str(tmp_path / "a.png")], ["a"], embeddings=False,
                       progress=False)
    assert time.monotonic() - started < 10


def test_an_address_that_is_no_ray_cluster_is_one_clear_error_at_once(model, tmp_path):
    # A web server (say, Ray's dashboard) on the port: ray.init retried it for ever.
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while RayEngine(ComputeSection(engine="ray", address=f"127.0.0.1:{port}"))._port_error(
                timeout_s=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        engine = RayEngine(ComputeSection(engine="ray", address=f"127.0.0.1:{port}",
                                          timeout_s=60))
        started = time.monotonic()
        with pytest.raises(ComputeError, match=f"'127.0.0.1:{port}' answers, but not as a Ray "
                                               "cluster: .*ray start --head"):
            engine.predict(model, [str(tmp_path / "a.png")], ["a"], embeddings=False,
                           progress=False)
        assert time.monotonic() - started < 15
    finally:
        server.kill()
        server.wait()


def test_keys_must_match_the_paths_one_to_one(model):
    engine = RayEngine(ComputeSection(engine="ray"))
    with pytest.raises(ValueError, match="one unique key per path"):
        engine.predict(model, ["x.png", "y.png"], ["k", "k"], embeddings=False, progress=False)
    empty = engine.predict(model, [], [], embeddings=True, progress=False)
    assert empty.probs.shape == (0, 10) and empty.embeddings.shape[0] == 0


def test_a_ray_worker_that_cannot_read_s3_says_why_on_the_driver(monkeypatch):
    # The line read "the Ray step failed on cluster ...: \x1b[36mray::MapWorker(...)": the
    # cause (no AWS credentials on the node) was left in Ray's logs on the head node.
    import numpy as np
    import pytest

    import pipeline.compute.ray_engine as ray_engine
    import training.predict
    from pipeline.compute.errors import ComputeError
    from training.sources import RemoteUnavailable

    def no_credentials(*args, **kwargs):
        raise RemoteUnavailable("no AWS credentials found for s3://b/x.png")

    monkeypatch.setattr(training.predict, "predict", no_credentials)
    worker = object.__new__(ray_engine._Predictor)
    worker.embeddings = False
    worker.model = None
    monkeypatch.setattr(ray_engine, "_zeros", lambda model, n, emb: training.predict.Predictions(
        probs=np.zeros((n, 2)), logits=np.zeros((n, 2)), embeddings=None))
    rows = worker({"key": np.array(["k"]), "path": np.array(["s3://b/x.png"])})
    with pytest.raises(ComputeError, match="cannot read the images: no AWS credentials found "
                                           "for s3://b/x.png; every node needs"):
        ray_engine.raise_failed(rows)
    wrapped = ray_engine._explained(RuntimeError("\x1b[36mray::MapWorker\x1b[39m (pid=1)"), "x")
    assert "\x1b" not in str(wrapped) and "ray::MapWorker (pid=1)" in str(wrapped)
