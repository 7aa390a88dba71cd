"""A round in probe mode: the challenger is a head on cached embeddings, the pool is predicted
from the cache, and a round that only changes the head decodes no image."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from labeling.store import NewLabel
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import train as train_step
from pipeline.round.probe import round_params
from tests.training.test_probe import _photos

pytestmark = pytest.mark.slow


def test_a_probe_round_trains_a_head_and_predicts_the_pool_from_the_cache(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    paths, _, labels = _photos(images, 30)
    config = init_project(tmp_path, images=images, classes=["red", "blue"], name="probe-test")
    text = config.read_text()
    text = text.replace('model = "small_cnn"', 'model = "mobilenet_v2"\nweights = "imagenet"')
    text = text.replace("finetune_after = 0", "finetune_after = 11")
    config.write_text(text.replace('mode = "finetune"', 'mode = "probe"'), encoding="utf-8")
    project = open_project(find_config(config))
    try:
        ingest_folder(project.store, project.config.images_dir)
        by_path = {i.path: i.key for i in project.store.items()}
        truth = dict(zip(paths, labels, strict=True))
        labeled = paths[:10]
        project.store.add_labels([NewLabel(by_path[p], truth[p], "human", who="t")
                                  for p in labeled])
        # Probe below finetune_after training labels, fine-tune from there.
        assert [round_params(project, n).mode for n in (10, 11)] == ["probe", "finetune"]
        rid = project.store.start_round()
        trained = train_step.train_challenger(project, rid, progress=False)
        assert trained["trained"], trained
        promote_step.decide_promotion(project, trained["version"])  # the first: promoted
        predicted = predict_step.predict_pool(project, rid, progress=False)
        chunks = list(project.embeddings_dir.glob("*/chunk-*.npz"))
        assert chunks and all("mobilenet_v2-IMAGENET1K_V1" in str(c) for c in chunks)
        keys, probs, _ = predict_step.load_predictions(predicted["file"])
        path_of = {v: k for k, v in by_path.items()}
        right = [project.classes[int(p.argmax())] == truth[path_of[k]]
                 for k, p in zip(keys, probs, strict=True)]
        assert len(keys) == 20 and np.mean(right) >= 0.9
        project.store.finish_round(rid, {})
        # Next round, same champion: the pool comes from the cache, without the images.
        moved = tmp_path / "elsewhere"
        shutil.move(images, moved)
        rid2 = project.store.start_round()
        again = predict_step.predict_pool(project, rid2, progress=False)
        _, probs2, _ = predict_step.load_predictions(again["file"])
        assert np.allclose(probs2, probs)
        # Promotion scores held-out items through the cache too.
        held_out = {k: truth[path_of[k]] for k in keys[:6]}
        assert promote_step.score_on_eval(project, trained["version"], held_out)["n"] == 6
        shutil.move(moved, images)
    finally:
        project.close()


def test_the_champion_files_its_vectors_under_its_own_backbone_after_the_weights_file_changed(
        tmp_path):
    # `weights = "w.pth"` replaced by other weights: the champion (its backbone is in its
    # checkpoint) filed its vectors under the new file's id, and the next probe, trained on
    # the new weights, read them as its own.
    import torch
    import torchvision

    from pipeline.round.probe import predict_probe
    from training.embedding_cache import EmbeddingCache
    from training.params import TrainParams
    from training.probe import backbone_id, train_probe

    weights = tmp_path / "w.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    params = TrainParams(model="mobilenet_v2", weights=str(weights), mode="probe")
    first = backbone_id(params)
    paths, keys, labels = _photos(tmp_path, 8)
    champion = train_probe(paths[:4], keys[:4], labels[:4], ("red", "blue"), params,
                           EmbeddingCache(tmp_path / "emb" / first))
    torch.manual_seed(1)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    second = backbone_id(params)
    assert second != first
    project = SimpleNamespace(embeddings_dir=tmp_path / "emb")
    predict_probe(project, champion, paths, keys, progress=False)
    assert len(EmbeddingCache(tmp_path / "emb" / first)) == 8
    assert not (tmp_path / "emb" / second).exists()
