"""What an annotator sees when opening a task labelloop pushed: the model's class already
ticked, with its version and score, checked from the page in headless chromium."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labeling.store import NewItem, file_key
from labeling.studio.push import PushItem, push_tasks
from tests.integration.browser import open_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_pushed_task_opens_with_the_models_choice_ticked(studio, studio_server, store,
                                                           project, tmp_path):
    # 64 px: Label Studio 1.23's image view reports a load error for images of a few pixels.
    path = studio_server.images_dir / f"screen-{tmp_path.name}" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    key, size = file_key(path)
    store.add_items([NewItem(key=key, path=str(path), size_bytes=size, width=64, height=64)])
    item = store.item(key)
    push_tasks(studio, store, project, [PushItem(key=item.key, path=item.path, label="dog",
                                                 score=0.93)], model_version="v7")
    task_id = store.tasks(project.id)[item.key]
    screen = open_task(studio_server, project.id, task_id, shot="pushed-task", expect="v7")
    assert screen.ticked == ["dog"]  # the prediction, pre-selected; nothing else
    assert "93.00%" in screen.text  # its score, beside the version
    assert "issue loading URL" not in screen.text  # and the picture itself
    with Image.open(screen.screenshot) as shot:
        assert shot.size == (1400, 900)
