"""The typical cold start in a project: the held-out half of the first batch is the same random
draw as without it, the training half covers the classes of an unequal pool through the
pretrained backbone's embeddings, and a config that cannot do it says why when loaded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labeling.selections import picks
from pipeline.ingest import ingest_folder
from pipeline.project.config import ConfigError
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.round import select as select_step

pytestmark = pytest.mark.slow
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 210),
           "yellow": (220, 210, 30)}
SIZES = {"red": 80, "green": 20, "blue": 12, "yellow": 8}


def _pool(folder):
    """Noisy colour squares, 64 px, in unequal numbers per class; path -> class."""
    rng = np.random.default_rng(0)
    truth = {}
    for name, count in SIZES.items():
        for i in range(count):
            pixels = np.clip(rng.normal(COLOURS[name], 25, (64, 64, 3)), 0, 255)
            path = folder / f"{name}-{i}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            truth[str(path)] = name
    return truth


def _project(root, images, cold_start, seed):
    config = init_project(root, images=images, classes=list(COLOURS), name=f"cold-{cold_start}")
    text = config.read_text().replace('model = "small_cnn"',
                                      'model = "mobilenet_v2"\nweights = "imagenet"')
    text = text.replace("initial_random = 100", "initial_random = 12")
    text = text.replace("seed = 0", f"seed = {seed}")
    config.write_text(text.replace('cold_start = "random"', f'cold_start = "{cold_start}"'))
    project = open_project(find_config(config))
    ingest_folder(project.store, project.config.images_dir)
    return project


def _first_batch(project, truth):
    """(held-out classes by key, training classes) of the cold-start batch."""
    rid = project.store.start_round()
    chosen = select_step.select_batch(project, rid, {})
    path = {i.key: i.path for i in project.store.items()}
    made = picks(project.store)
    held = {k: truth[path[k]] for k, p in made.items() if p.holdout}
    train = [truth[path[k]] for k, p in made.items() if not p.holdout]
    return chosen, held, train


def test_typical_training_picks_cover_the_classes_and_held_out_stays_random(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    truth = _pool(images)
    random_covers = []
    for seed in (0, 1, 2):
        batches = {}
        for cold_start in ("random", "typical"):
            project = _project(tmp_path / f"{cold_start}{seed}", images, cold_start, seed)
            try:
                batches[cold_start] = _first_batch(project, truth)
                if cold_start == "typical":  # the embeddings stay for the probe rounds after
                    assert list(project.embeddings_dir.glob("*/chunk-*.npz"))
            finally:
                project.close()
        (_, held_r, train_r), (chosen, held_t, train_t) = batches["random"], batches["typical"]
        assert chosen == {"picked": 12, "random": 6, "audit": 0, "strategy": 6}
        assert held_t == held_r  # same items: the statistics' random sample is untouched
        assert set(train_t) == set(COLOURS), (seed, train_t)  # 6 picks, 80/20/12/8 items
        random_covers.append(len(set(train_r)))
    assert min(random_covers) < len(COLOURS), random_covers  # random picks miss a class


def test_typical_cold_start_without_pretrained_weights_is_refused(tmp_path):
    config = init_project(tmp_path, images=tmp_path, classes=["a", "b"], name="cold-refused")
    config.write_text(config.read_text().replace('cold_start = "random"',
                                                 'cold_start = "typical"'))
    with pytest.raises(ConfigError, match=r"cold_start = \"typical\".*set \[training\] weights"):
        open_project(find_config(config))


def test_typical_picks_take_one_of_each_near_duplicate_group_and_none_of_a_held_out_one(
        tmp_path, monkeypatch):
    # The strategy's picks kept clear of near-duplicates; the typical cold start's did not.
    images = tmp_path / "images"
    images.mkdir()
    truth = _pool(images)
    project = _project(tmp_path / "p", images, "typical", 0)
    try:
        path = {i.key: i.path for i in project.store.items()}
        groups = {k: "reds" for k, p in path.items() if truth[p] == "red"}
        monkeypatch.setattr(type(project.store), "near_duplicate_groups", lambda self: groups)
        _first_batch(project, truth)
        made = picks(project.store)
        train = [k for k, p in made.items() if not p.holdout]
        held_reds = [k for k, p in made.items() if p.holdout and k in groups]
        assert len(train) == 6
        assert sum(k in groups for k in train) <= (0 if held_reds else 1)
    finally:
        project.close()
