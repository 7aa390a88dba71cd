"""A round's predict step on a real one-machine Ray cluster (``ray start --head`` on
127.0.0.1): the same predictions file as the local engine, item for item; a cluster that dies
mid-step stops the step with a clear error, nothing saved, and the next run resumes; probe
mode's embeddings computed on the cluster are the local ones."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labeling.store import NewLabel
from pipeline.compute.engine import ComputeError
from pipeline.compute.local_cluster import LocalCluster
from pipeline.compute.ray_engine import RayEngine
from pipeline.project.config import ComputeSection
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import train as train_step
from pipeline.round.labeled import champion_model_path
from pipeline.round.probe import cache_for, predict_probe
from training.checkpoint import load_checkpoint
from training.images import ImageError
from training.predict import predict

pytest.importorskip("ray.data", reason='the Ray engine needs pip install "labelloop[ray]"')
pytestmark = [pytest.mark.slow, pytest.mark.ray]
# Every wait on Ray is bounded (a starved actor pool waits forever without an error).
WAIT_S = 240


@pytest.fixture
def champion_project(tmp_path, quick_project):
    """A digits project (300 images) with a trained champion and 250 items to predict."""
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)[:300]
    proj, truth, _ = quick_project(tmp_path, images, data.target[:300], "ray-test")
    items = list(proj.store.items())
    proj.store.add_labels([NewLabel(i.key, truth[i.path], "human", who="t")
                           for i in items[:50]])
    rid = proj.store.start_round()
    trained = train_step.train_challenger(proj, rid, progress=False)
    promote_step.decide_promotion(proj, trained["version"])
    yield proj, rid
    proj.close()


def _on(proj, compute: ComputeSection):
    proj.config = proj.config.model_copy(update={"compute": compute})


def _ray(address: str) -> ComputeSection:
    return ComputeSection(engine="ray", address=address, actors=1, batch_size=64,
                          timeout_s=WAIT_S)


def _hanging_on(path: str, tmp_path: Path) -> dict[str, str]:
    """A Ray cluster's environment whose workers hang when they look at ``path``: a
    ``sitecustomize`` on their PYTHONPATH (Python imports it at start-up)."""
    hook = tmp_path / "hang-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import pathlib, time\n"
        "_stat = pathlib.Path.stat\n"
        "def stat(self, *args, **kwargs):\n"
        f"    if str(self) == {str(path)!r}:\n"
        "        time.sleep(600)\n"
        "    return _stat(self, *args, **kwargs)\n"
        "pathlib.Path.stat = stat\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook),
                                                       os.environ.get("PYTHONPATH")]))}


def test_the_ray_engine_predicts_the_pool_as_the_local_one_and_resumes_after_a_dead_cluster(
        champion_project, tmp_path):
    proj, rid = champion_project
    local = predict_step.predict_pool(proj, rid, progress=False)
    keys, probs, _ = predict_step.load_predictions(local["file"])
    assert local["predicted"] == len(keys) > 200
    kept = tmp_path / "local.npz"
    predict_file = proj.predictions_dir / local["file"].rsplit("/", 1)[-1]
    predict_file.rename(kept)  # the step would reuse it

    # The cluster dies while the step runs: a clear error, no predictions file. The cluster's
    # workers hang on one pool image (as on a stalled network disk), so the step is still
    # running when the cluster is killed, however fast the machine.
    stuck = list(proj.store.items())[60].path
    cluster = LocalCluster(cpus=2, timeout_s=WAIT_S, env=_hanging_on(stuck, tmp_path))
    _on(proj, _ray(cluster.address))
    killer = threading.Timer(5.0, cluster.kill)
    killer.start()
    try:
        with pytest.raises(ComputeError, match="resume at the predict step"):
            predict_step.predict_pool(proj, rid, progress=False)
    finally:
        killer.cancel()
        cluster.kill()
    assert not predict_file.exists()
    assert not list(proj.predictions_dir.glob("*.tmp.npz"))

    # The next run, on a cluster that is up, writes what the local engine wrote.
    with LocalCluster(cpus=2, timeout_s=WAIT_S) as cluster:
        _on(proj, _ray(cluster.address))
        on_ray = predict_step.predict_pool(proj, rid, progress=False)
        ray_keys, ray_probs, _ = predict_step.load_predictions(on_ray["file"])
        assert ray_keys == keys  # joined on the item key, in the local engine's order
        np.testing.assert_allclose(ray_probs, probs, rtol=1e-5, atol=1e-6)
        assert (ray_probs.argmax(1) == probs.argmax(1)).all()

        # An image that turned unreadable after ingest: the same error as on the local engine.
        model = load_checkpoint(champion_model_path(proj)[1])
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"not a png")
        good = next(iter(proj.store.items())).path
        with pytest.raises(ImageError, match="broken.png"):
            RayEngine(_ray(cluster.address)).predict(model, [good, str(broken)], ["a", "b"],
                                                     embeddings=False, progress=False)

        # Probe mode: the embeddings the cache lacks are computed on the cluster, and they
        # are the local engine's.
        items = list(proj.store.items())[:40]
        paths, keys = [i.path for i in items], [i.key for i in items]
        via_ray = predict_probe(proj, model, paths, keys, progress=False,
                                engine=RayEngine(_ray(cluster.address)))
        here = predict(model, paths, embeddings=True)
        np.testing.assert_allclose(via_ray.embeddings, here.embeddings, rtol=1e-5, atol=1e-5)
        assert cache_for(proj, model.params).missing(keys) == []
