"""One real Label Studio for the whole test session, and a fresh project per test.

The server is started with labelloop's own ``server.start`` on a free loopback port with a
temporary data dir (the first start runs migrations: about 30-40 s), and stopped by its PID at
the end of the session, also when tests fail or the session is interrupted (a finalizer;
``server.stop`` escalates to SIGKILL of the process group if SIGTERM is not enough).

Layout of the session folder (so the CLI can be pointed at it with a ``labelloop.toml``)::

    labelloop.toml
    ws/studio/        the server's data dir (= Config.studio_dir for workspace "ws")
    data/images/      the served image folder; each test writes into its own subfolder
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.store import LabelStore, NewItem
from labeling.studio import server
from labeling.studio.accounts import add_annotator, annotator_key
from labeling.studio.connection import Studio, connect
from labeling.studio.project import ImageSource, StudioProject, ensure_project
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from tests.integration.fault_proxy import FaultProxy
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / ".venv-studio" / "bin" / "label-studio"
CLASSES = ("cat", "dog", "bird")
_counter = itertools.count()


@dataclass(frozen=True)
class SessionServer:
    url: str
    port: int
    token: str
    root: Path
    data_dir: Path
    images_dir: Path
    config_path: Path
    executable: Path = EXECUTABLE

    def __repr__(self) -> str:  # no token in test output
        return f"SessionServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    def restart(self) -> server.ServerInfo:
        """Start it again after a test stopped it (same data dir, port and token)."""
        return server.start(self.data_dir, port=self.port, images_dir=self.images_dir,
                            executable=EXECUTABLE)


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory, request) -> SessionServer:
    if not EXECUTABLE.exists():
        pytest.fail(f"Label Studio is not installed at {EXECUTABLE}; run "
                    f"`bash scripts/setup_studio.sh` (scripts/test.sh runs it before pytest)",
                    pytrace=False)
    root = tmp_path_factory.mktemp("studio-session")
    data_dir = root / "ws" / "studio"
    images_dir = root / "data" / "images"
    images_dir.mkdir(parents=True)
    port = free_port()
    # Registered before starting: a start that fails or is interrupted is cleaned up too.
    request.addfinalizer(lambda: server.stop(data_dir))
    info = server.start(data_dir, port=port, images_dir=images_dir, executable=EXECUTABLE)
    config_path = root / "labelloop.toml"
    classes = ", ".join(f'"{c}"' for c in CLASSES)
    config_path.write_text(f"""workspace = "ws"

[project]
name = "session"
classes = [{classes}]
images = "data/images"

[studio]
port = {port}
executable = "{EXECUTABLE}"
username = "{info.username}"
""", encoding="utf-8")
    return SessionServer(url=info.url, port=port, token=info.token_file.read_text().strip(),
                         root=root, data_dir=data_dir, images_dir=images_dir,
                         config_path=config_path)


@pytest.fixture
def unused_port() -> int:
    """A loopback port that nothing listens on."""
    return free_port()


@pytest.fixture
def studio(studio_server) -> Studio:
    return connect(studio_server.url, studio_server.token, timeout=120)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    s = LabelStore(tmp_path / "labels.db")
    yield s
    s.close()


@pytest.fixture
def images(studio_server) -> ImageSource:
    return ImageSource.local(studio_server.images_dir)


@pytest.fixture
def new_project(studio, images, request) -> Callable[..., StudioProject]:
    """Make a fresh Label Studio project (unique title) for this test."""

    def make(classes=CLASSES, title: str | None = None, task=None) -> StudioProject:
        title = title or f"{request.node.name[5:40]}-{next(_counter)}"
        return ensure_project(studio, title, classes, images=images, task=task)

    return make


@pytest.fixture
def project(new_project) -> StudioProject:
    return new_project()


@pytest.fixture
def make_items(studio_server, store, request) -> Callable[[int], list[NewItem]]:
    """Write ``n`` distinct tiny PNGs into this test's own image subfolder; add them to the
    store. Returns the items (key = sha256 of the file, as ingest computes it)."""

    def make(n: int) -> list[NewItem]:
        folder = studio_server.images_dir / f"{request.node.name[:60]}-{next(_counter)}"
        folder.mkdir(parents=True)
        items = []
        for i in range(n):
            path = folder / f"img{i:05d}.png"
            pixels = np.frombuffer(hashlib.sha256(f"{folder.name}/{i}".encode()).digest(),
                                   dtype=np.uint8)[:16].reshape(4, 4)
            Image.fromarray(pixels).save(path)
            key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            items.append(NewItem(key=key, path=str(path.resolve()),
                                 size_bytes=path.stat().st_size, width=4, height=4))
        store.add_items(items)
        return items

    return make


@pytest.fixture(scope="session")
def small_digits(studio_server) -> Path:
    """400 of sklearn's digits as PNGs with a ``labels.csv`` (path,label) beside the folder,
    inside the server's document root; rounds on them take seconds."""
    from sklearn.datasets import load_digits  # slow import, only for the tests that use it

    folder = studio_server.images_dir.parent / "digits-small"
    (folder / "images").mkdir(parents=True)
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i in np.random.default_rng(0).permutation(len(images))[:400]:
            Image.fromarray(images[i], mode="L").save(folder / "images" / f"d{i:04d}.png")
            writer.writerow([f"images/d{i:04d}.png", int(data.target[i])])
    return folder


@pytest.fixture
def digits_project(studio_server, small_digits, tmp_path) -> Callable[..., Path]:
    """make(name, *, folder=tmp_path, studio_extra="") -> the folder of a labelloop.toml for a
    digits project on the session's server (an external server to it; the key is not in the
    config, so give it with LABEL_STUDIO_API_KEY or add api_key_file in ``studio_extra``), with
    quick training settings and its images ingested."""

    def make(name: str, *, folder: Path = tmp_path, studio_extra: str = "") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        classes = ", ".join(f'"{d}"' for d in range(10))
        (folder / "labelloop.toml").write_text(textwrap.dedent(f"""\
            workspace = "ws"
            [project]
            name = "{name}"
            classes = [{classes}]
            images = "{small_digits / 'images'}"
            [studio]
            url = "{studio_server.url}"
            local_files_root = "{studio_server.images_dir.parent}"
            """) + studio_extra + textwrap.dedent("""
            [training]
            epochs = 2
            min_steps = 40
            batch_size = 32
            [loop]
            batch_size = 30
            initial_random = 80
            min_new_labels = 10
            """), encoding="utf-8")
        project = open_project(find_config(folder))
        try:
            ingest_folder(project.store, project.config.images_dir)
        finally:
            project.close()
        return folder

    return make


@pytest.fixture(scope="session")
def digits_export(studio_server) -> Path:
    """All 1,797 digits exported once (``labelloop datasets export`` layout), inside the
    server's local-files document root."""
    from pipeline.datasets import export_dataset

    out = studio_server.images_dir.parent / "digits-export"
    if not (out / "labels.csv").exists():
        export_dataset("digits", out)
    return out


@pytest.fixture
def proxy(studio_server) -> FaultProxy:
    """A fault-injecting proxy in front of the session's server (``fault_proxy``)."""
    p = FaultProxy(studio_server.url)
    yield p
    p.close()


_annotator_names = itertools.count()


@pytest.fixture
def accounts(studio, tmp_path):
    """make(n) -> [(Annotator, Studio)]: n new annotator accounts on the session server,
    connected with their own keys (names unique across the session: emails are server-wide)."""

    def make(n: int):
        made = [add_annotator(studio, tmp_path, f"p{os.getpid()}x{next(_annotator_names)}")
                for _ in range(n)]
        return [(a, connect(studio.url, annotator_key(a), timeout=120)) for a in made]

    return make
