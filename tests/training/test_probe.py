"""Probe mode: embeddings cached once per item and backbone, a head trained on them, and
prediction from the cache that equals prediction from the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.embedding_cache import EmbeddingCache
from training.params import TrainParams
from training.predict import predict
from training.probe import backbone_id, predict_cached, train_probe

PROBE = TrainParams(model="mobilenet_v2", weights="imagenet", mode="probe")


def _photos(folder: Path, n: int, seed: int = 0):
    """Two classes of 64 px colour images: reddish and bluish, noisy."""
    rng = np.random.default_rng(seed)
    paths, keys, labels = [], [], []
    for i in range(n):
        cls = i % 2
        pixels = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
        pixels[..., 0 if cls == 0 else 2] += 150
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        keys.append(f"sha256:{seed}-{i}")
        labels.append(("red", "blue")[cls])
    return paths, keys, labels


def test_a_probe_learns_from_few_labels_and_the_cache_replaces_the_images(tmp_path):
    paths, keys, labels = _photos(tmp_path, 40)
    cache = EmbeddingCache(tmp_path / "emb" / backbone_id(PROBE))
    model = train_probe(paths[:10], keys[:10], labels[:10], ("red", "blue"), PROBE, cache)
    assert len(cache) == 10 and model.metrics["mode"] == "probe"
    assert "IMAGENET1K_V1" in model.metrics["weights"]
    cached = predict_cached(model, paths, keys, cache)
    assert len(cache) == 40  # the 30 new ones appended, the 10 not computed again
    right = np.array(["red", "blue"])[cached.probs.argmax(1)] == np.array(labels)
    assert right[10:].mean() >= 0.95
    # Sure where it is easily right: a strongly penalised head shrinks every logit (0.92-0.95
    # here at C = 30), and rounds only ever soften, so thresholds would see no sure item.
    assert cached.probs.max(1)[10:].min() >= 0.99
    # The fast path gives what the images give.
    assert np.allclose(cached.probs, predict(model, paths).probs, atol=1e-5)
    # A pool whose every item has a person's label: no item, no error (it stopped each round).
    assert predict_cached(model, [], [], cache).probs.shape == (0, 2)
    for p in paths:
        Path(p).unlink()  # a round that only changes the head reads no image
    again = predict_cached(model, paths, keys, EmbeddingCache(cache.folder))
    assert np.array_equal(again.probs, cached.probs)


def test_a_killed_write_leaves_a_readable_cache_and_backbones_never_share(tmp_path):
    cache = EmbeddingCache(tmp_path / "b")
    cache.add(["a", "b"], np.ones((2, 4), np.float32))
    (tmp_path / "b" / "chunk-999-1.tmp").write_bytes(b"PK\x03\x04 half a chunk")  # the kill
    reread = EmbeddingCache(tmp_path / "b")
    assert len(reread) == 2 and reread.missing(["a", "c", "c"]) == ["c"]
    with pytest.raises(KeyError, match="no cached embedding for c"):
        reread.get(["a", "c"])
    ids = {backbone_id(PROBE), backbone_id(TrainParams(model="mobilenet_v2", mode="probe")),
           backbone_id(TrainParams(model="mobilenet_v2", weights="imagenet", image_size=160)),
           backbone_id(TrainParams(model="resnet18", weights="imagenet"))}
    assert len(ids) == 4  # model, weights and input size each change the vectors


def test_a_probe_whose_cache_cannot_grow_still_predicts_every_item(tmp_path, monkeypatch):
    paths, keys, labels = _photos(tmp_path, 12)
    cache = EmbeddingCache(tmp_path / "emb" / backbone_id(PROBE))
    model = train_probe(paths[:6], keys[:6], labels[:6], ("red", "blue"), PROBE, cache)
    def full_disk(self, keys, vectors):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EmbeddingCache, "add", full_disk)
    with pytest.warns(UserWarning, match="embedding cache .* not written .*No space left"):
        got = predict_cached(model, paths, keys, cache)  # 6 cached, 6 computed, none kept
    assert np.allclose(got.probs, predict(model, paths).probs, atol=1e-5)
    assert cache.missing(keys) == keys[6:]


def test_a_step_killed_mid_embedding_keeps_the_chunks_it_finished(tmp_path, monkeypatch):
    # The whole step's vectors were written once at its end: a kill near the end of a pool's
    # embedding (minutes for 20,000 photos) lost all of it.
    import training.probe as probe

    paths, keys, _ = _photos(tmp_path, 10)
    cache = EmbeddingCache(tmp_path / "emb")
    monkeypatch.setattr(probe, "EMBED_CHUNK", 4)
    calls = []

    def killed_on_the_third(model, chunk_paths, **kw):
        calls.append(len(chunk_paths))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the kill
        return predict(model, chunk_paths, **kw)

    monkeypatch.setattr(probe, "predict", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        probe.embed(probe.backbone(PROBE, 2), paths, keys, cache)
    reread = EmbeddingCache(tmp_path / "emb")
    assert calls == [4, 4, 2] and len(reread) == 8 and reread.missing(keys) == keys[8:]


def test_another_engine_embeds_in_chunks_too_and_a_dead_one_keeps_the_finished(
        tmp_path, monkeypatch):
    # Ray got the whole pool in one call: a cluster dying near its end lost all of it.
    import training.probe as probe

    paths, keys, _ = _photos(tmp_path, 10)
    cache = EmbeddingCache(tmp_path / "emb")
    monkeypatch.setattr(probe, "ENGINE_CHUNK", 4)
    calls = []

    def cluster_dies_on_the_third(model, chunk_paths, chunk_keys):
        calls.append(list(chunk_keys))
        if len(calls) == 3:
            raise RuntimeError("the cluster died")
        return predict(model, chunk_paths, embeddings=True)

    with pytest.raises(RuntimeError, match="died"):
        probe.embed(probe.backbone(PROBE, 2), paths, keys, cache,
                    predict_files=cluster_dies_on_the_third)
    assert calls == [keys[:4], keys[4:8], keys[8:]]
    assert EmbeddingCache(tmp_path / "emb").missing(keys) == keys[8:]


def test_a_full_disk_leaves_no_half_chunk_and_the_cache_as_it_was(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")
    cache.add(["a"], np.ones((1, 4), np.float32))

    def full_disk(handle, **arrays):
        handle.write(b"PK\x03\x04 part of a chunk")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        cache.add(["b"], np.ones((1, 4), np.float32))
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".npz"]  # no .tmp
    monkeypatch.undo()
    reread = EmbeddingCache(tmp_path / "c")
    assert len(reread) == 1 and reread.missing(["a", "b"]) == ["b"]


def test_a_probe_refuses_labels_outside_its_classes(tmp_path):
    paths, keys, _ = _photos(tmp_path, 2)
    with pytest.raises(ValueError, match=r"labels \['green'\] are not among the classes"):
        train_probe(paths, keys, ["red", "green"], ("red", "blue"), PROBE,
                    EmbeddingCache(tmp_path / "emb"))


def test_a_lite2_probe_survives_its_checkpoint(tmp_path):
    # EfficientNet-Lite2 (ImageNet weights from the hub cache, 260 px, TF-style scaling): the
    # probe saved and loaded as the registry does predicts from the images what the cache gave.
    from training.checkpoint import load_checkpoint, save_checkpoint

    params = TrainParams(model="efficientnet_lite2", weights="imagenet", mode="probe")
    paths, keys, labels = _photos(tmp_path, 12, seed=1)
    cache = EmbeddingCache(tmp_path / "emb" / backbone_id(params))
    model = train_probe(paths[:6], keys[:6], labels[:6], ("red", "blue"), params, cache)
    assert "efficientnet-lite2" in model.metrics["weights"]
    cached = predict_cached(model, paths, keys, cache)
    assert (np.array(["red", "blue"])[cached.probs.argmax(1)] == np.array(labels))[6:].all()
    save_checkpoint(model, tmp_path / "lite2.pt")
    again = load_checkpoint(tmp_path / "lite2.pt")
    assert again.transform.image_size == 260
    assert np.allclose(predict(again, paths).probs, cached.probs, atol=1e-5)


def test_a_probe_saved_before_the_normalised_head_still_predicts_as_it_did(tmp_path):
    # Registries hold version-1 checkpoints whose probe head is a plain linear layer on the raw
    # embeddings; rolling back to one must give its own predictions, not the new head's maths.
    import torch

    from training.checkpoint import load_checkpoint, save_checkpoint

    paths, keys, labels = _photos(tmp_path, 8, seed=2)
    model = train_probe(paths[:4], keys[:4], labels[:4], ("red", "blue"), PROBE,
                        EmbeddingCache(tmp_path / "emb"))
    old = torch.nn.Linear(model.module.head.in_features, 2)
    old.load_state_dict(model.module.head.state_dict())
    model.module.head = old  # what a version-1 probe was
    before = predict(model, paths).probs
    save_checkpoint(model, tmp_path / "v1.pt")
    contents = torch.load(tmp_path / "v1.pt", weights_only=True)
    assert contents.pop("head") == "linear" and contents["version"] == 1  # old readers read it
    torch.save({**contents, "version": 1}, tmp_path / "v1.pt")
    assert np.allclose(predict(load_checkpoint(tmp_path / "v1.pt"), paths).probs, before,
                       atol=1e-6)


def test_a_probe_checkpoint_is_refused_by_old_readers_and_lends_only_its_backbone(tmp_path):
    import torch

    from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from training.models import NormalizedLinear, get_model

    small = TrainParams(model="small_cnn", mode="probe")
    paths, keys, labels = _photos(tmp_path, 4, seed=3)
    model = train_probe(paths, keys, labels, ("red", "blue"), small,
                        EmbeddingCache(tmp_path / "emb"))
    save_checkpoint(model, tmp_path / "probe.pt")
    contents = torch.load(tmp_path / "probe.pt", weights_only=True)
    # Version 2: a labelloop that reads version 1 only refuses it instead of mispredicting.
    assert (contents["version"], contents["head"]) == (2, "normalized")
    # As `weights = "probe.pt"`, the backbone carries over; the head, on normalised inputs,
    # does not go into a plain linear head.
    module = get_model("small_cnn", 2, weights=str(tmp_path / "probe.pt"))
    assert type(module.head) is torch.nn.Linear and "head started afresh" in module.weights_note
    assert torch.equal(module.features[0].weight, model.module.features[0].weight)
    assert not torch.equal(module.head.weight, model.module.head.weight)
    assert isinstance(load_checkpoint(tmp_path / "probe.pt").module.head, NormalizedLinear)
    torch.save({**contents, "head": "cosine"}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="has head 'cosine'"):
        load_checkpoint(tmp_path / "odd.pt")
