"""Ingest keeps each new item's decoded pixels at the model's input size, so that even the first
prediction of a new image reads them instead of decoding the file again."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from labeling.store import LabelStore
from pipeline.cli.app import app
from pipeline.ingest import ingest_folder
from pipeline.project.pixels import ingest_keeper
from pipeline.project.workspace import find_config, init_project
from tests.data.make_corpus import encoded, write_file
from tests.pipeline.test_ingest import BAD, folder  # noqa: F401 (a fixture)
from training.data import TransformConfig, load_arrays
from training.params import TrainParams
from training.pixels import pixel_cache, pixel_keeper

GREY28 = TransformConfig(1, 28, (0.5,), (0.5,))
RGB32 = TransformConfig(3, 32, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize("tconf", [GREY28, RGB32], ids=["grey", "rgb"])
def test_kept_pixels_are_what_the_predict_path_decodes(store, folder, tmp_path, tconf):  # noqa: F811
    root, sizes = folder
    keeper = pixel_keeper(tmp_path / "pixels", tconf)
    report = ingest_folder(store, root, keep_pixels=keeper)
    assert len(report.added) == len(sizes)  # every mode: grey, RGB, RGBA, palette, CMYK, 16 bit
    assert {q.path for q in report.quarantined} == {str(root / name) for name in BAD}
    cache = pixel_cache(tmp_path / "pixels", tconf)  # read back from disk
    keys = [item.key for item in report.added]
    assert cache.missing(keys) == [] and len(cache) == len(keys)  # nothing for the bad files
    decoded = load_arrays([item.path for item in report.added], tconf)
    kept = cache.get(keys).reshape(decoded.shape)
    assert np.array_equal(kept, decoded)


def test_a_second_ingest_keeps_only_the_new_items(store, folder, tmp_path):  # noqa: F811
    root, sizes = folder
    ingest_folder(store, root, keep_pixels=pixel_keeper(tmp_path / "pixels", GREY28))
    write_file(root / "new.png", encoded(Image.fromarray(np.full((9, 9), 7, np.uint8)), "PNG"))
    (root / "rgb.jpg").rename(root / "renamed.jpg")  # the same bytes: no new item
    again = ingest_folder(store, root, keep_pixels=pixel_keeper(tmp_path / "pixels", GREY28))
    assert [item.path for item in again.added] == [str(root / "new.png")]
    cache = pixel_cache(tmp_path / "pixels", GREY28)
    assert len(cache) == len(sizes) + 1
    assert np.array_equal(cache.get([again.added[0].key]), np.full((1, 28 * 28), 7, np.uint8))


def test_only_a_classifier_that_reads_pixels_gets_a_keeper(tmp_path):
    (tmp_path / "img").mkdir()
    init_project(tmp_path / "a", images=tmp_path / "img", classes=("a", "b"), name="grey")
    config = find_config(tmp_path / "a")
    keeper = ingest_keeper(config, TrainParams())  # the small CNN: 28 x 28 grey
    assert keeper is not None and keeper.tconf.image_size == 28
    assert keeper.cache.folder == config.workspace_dir / "pixels/1x28"
    assert ingest_keeper(config, TrainParams(mode="probe")) is None  # embeddings instead
    assert ingest_keeper(config, TrainParams(model="mobilenet_v2")) is None  # 150 KB an item
    init_project(tmp_path / "b", images=tmp_path / "img", classes=("a", "b"), name="boxes",
                 task="detection")
    assert ingest_keeper(find_config(tmp_path / "b"), TrainParams()) is None


def test_labelloop_ingest_keeps_the_pixels_of_its_project(tmp_path, folder):  # noqa: F811
    root, sizes = folder
    init_project(tmp_path / "proj", images=root, classes=("a", "b"), name="cli-ingest")
    result = CliRunner().invoke(app, ["ingest", "--config", str(tmp_path / "proj")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    config = find_config(tmp_path / "proj")
    assert len(pixel_cache(config.workspace_dir / "pixels", GREY28)) == len(sizes)


def test_a_pixel_cache_that_cannot_be_written_costs_no_item(tmp_path, folder):  # noqa: F811
    """A full disk or a read-only cache: one line says so, every item is still ingested, and
    the next ingest (the cache writable again) adds nothing twice."""
    root, sizes = folder
    init_project(tmp_path / "proj", images=root, classes=("a", "b"), name="no-cache")
    config = find_config(tmp_path / "proj")
    blocked = config.workspace_dir / "pixels"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the cache's folder goes")  # mkdir fails even as root
    result = CliRunner().invoke(app, ["ingest", "--config", str(tmp_path / "proj")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "pixels not kept:" in result.output and "Traceback" not in result.output
    assert "decodes the image files instead" in result.output
    blocked.unlink()
    again = CliRunner().invoke(app, ["ingest", "--config", str(tmp_path / "proj")],
                               env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "pixels not kept" not in again.output
    store = LabelStore(config.store_url)
    assert store.count_items() == len(sizes)  # all of them the first time, none twice
    store.close()
