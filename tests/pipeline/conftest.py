"""Shared helpers for pipeline tests: small digits projects that train in seconds."""

from pathlib import Path

import pytest
from PIL import Image

from labeling.store import LabelStore
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project

CLASSES = [str(d) for d in range(10)]
# Small enough to train in a few seconds on two cores; good enough to tell digits apart.
QUICK = {"epochs = 30": "epochs = 1", "min_steps = 200": "min_steps = 40",
         "batch_size = 64": "batch_size = 32", "min_new_labels = 50": "min_new_labels = 10",
         "initial_random = 100": "initial_random = 200"}


def _write_pngs(folder: Path, images, labels, prefix: str) -> dict[str, str]:
    """Save uint8 images as PNG files; returns resolved path -> true class."""
    truth = {}
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"{prefix}{i:04d}.png"
        Image.fromarray(img, mode="L").save(path)
        truth[str(path.resolve())] = str(y)
    return truth


@pytest.fixture
def store(tmp_path):
    """An empty label store in a SQLite file of the test's own folder."""
    s = LabelStore(tmp_path / "labels.db")
    yield s
    s.close()


@pytest.fixture
def write_pngs():
    return _write_pngs


@pytest.fixture
def quick_project():
    """make(tmp_path, images, labels, name) -> (project, truth, config path): a digits
    project with quick training settings, its images written and ingested."""

    def make(tmp_path: Path, images, labels, name: str):
        folder = tmp_path / "images"
        folder.mkdir()
        truth = _write_pngs(folder, images, labels, "a")
        config_path = init_project(tmp_path, images=folder, classes=CLASSES, name=name)
        text = config_path.read_text()
        for old, new in QUICK.items():
            assert old in text, old
            text = text.replace(old, new)
        config_path.write_text(text)
        proj = open_project(find_config(tmp_path))
        ingest_folder(proj.store, folder)
        return proj, truth, config_path

    return make


def on_postgres(text: str, server) -> str:
    """A ``labelloop.toml`` text (``render_config``'s) with its label store, MLflow store and
    Optuna storage each in a new database on the PostgreSQL ``server`` (tests/postgres.py)."""
    for section, key in (("store", "url"), ("registry", "tracking_uri"), ("tuning", "storage")):
        start = text.index(f"[{section}]\n")
        at = text.index(f'\n{key} = ""\n', start)
        url = server.create_database(section)
        text = f'{text[:at]}\n{key} = "{url}"\n{text[at + len(key) + 7:]}'
    return text


def calls_to(monkeypatch, module, name: str) -> list[str]:
    """The first arguments of every call to ``module.name`` from now on, in order (the
    function still runs): e.g. the files ingest read."""
    seen: list[str] = []
    real = getattr(module, name)

    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return seen
