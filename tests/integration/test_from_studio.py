"""``labelloop init --from-studio``: a labelloop project attached to a Label Studio project with
annotated tasks, through the real server; nothing in that project changes, twice is once."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from labeling.studio.project import LOCAL_FILES_PATH
from labeling.tasks.registry import get_task_type
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from tests.integration.cli import cli_env, labelloop

pytestmark = pytest.mark.integration
TASK = get_task_type("classification")
CLASSES = ("cat", "dog", "bird")
_n = itertools.count()


def _project_with_answers(studio, root, folder_in, folder_out):
    """A project made in Label Studio by hand: 30 tasks on files in ``folder_in``, 20 on files
    elsewhere in the served root, one broken image; 50 answered."""
    rng = np.random.default_rng(0)
    urls, answers = [], []
    for i in range(50):
        folder = folder_in if i < 30 else folder_out
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
        urls.append(f"{LOCAL_FILES_PATH}?d={(folder / f'{i}.png').relative_to(root).as_posix()}")
        answers.append(CLASSES[i % 3])
    (folder_in / "broken.png").write_bytes(b"not a png")
    urls.append(f"{LOCAL_FILES_PATH}?d={(folder_in / 'broken.png').relative_to(root).as_posix()}")
    with studio.errors("making the project"):
        # A title as people write them, which the model registry refuses as a model name.
        made = studio.client.projects.create(title=f"their \"pets\"/{next(_n)}: cat's",
                                             label_config=TASK.label_config(CLASSES))
        ids = studio.client.projects.import_tasks(
            id=made.id, request=[{"data": {"image": u}} for u in urls],
            return_task_ids=True).task_ids
        for tid, label in zip(ids, answers, strict=False):
            studio.client.annotations.create(id=int(tid), result=TASK.prediction_result(label))
    return int(made.id), dict(zip(map(int, ids), answers, strict=False))


def _studio_side(studio, project_id):
    tasks = studio.get_json("api/tasks", {"project": project_id, "page_size": 200,
                                          "fields": "all"}, action="listing tasks")
    rows = tasks["tasks"] if isinstance(tasks, dict) else tasks
    storages = studio.get_json("api/storages/localfiles", {"project": project_id},
                               action="listing storages")
    return sorted((t["id"], t["data"], len(t["annotations"])) for t in rows), len(storages)


def test_attach_to_an_existing_project_and_run_twice(studio, studio_server, tmp_path):
    root = studio_server.images_dir.parent
    images, elsewhere = root / f"theirs-{tmp_path.name}", root / f"other-{tmp_path.name}"
    project_id, answers = _project_with_answers(studio, root, images, elsewhere)
    before = _studio_side(studio, project_id)
    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    command = ["init", "--from-studio", str(project_id), "--images", str(images),
               "--studio-url", studio_server.url, "--folder", str(tmp_path / "p")]
    for run in range(2):
        done = labelloop(*command, env=env)
        assert done.returncode == 0, done.stderr
        assert "broken.png" in done.stderr  # the unreadable task, with its reason
        project = open_project(find_config(tmp_path / "p"), env=env)
        try:
            assert project.classes == CLASSES
            assert project.config.project.name.startswith("their 'pets'-")
            assert project.registry.champion() is None  # the registry takes the name
            items = project.store.items()
            assert len(items) == 50
            assert sum(i.path.startswith(str(images / "imported")) for i in items) == 20
            labels = project.store.current_labels()
            by_task = {t: k for k, t in project.store.tasks(project_id).items()}
            assert {t: labels[by_task[t]].label for t in answers} == answers
            assert {v.source for v in labels.values()} == {"human"}
            assert all(len(project.store.history(k)) == 1 for k in labels)  # never twice
        finally:
            project.close()
        if run == 0:
            assert "50 new label(s)" in done.stderr
        else:
            assert "0 new item(s), 0 new label(s)" in done.stderr
    assert _studio_side(studio, project_id) == before  # nothing changed in Label Studio


def test_a_project_labelloop_cannot_read_or_that_does_not_exist(studio, studio_server, tmp_path):
    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    with studio.errors("making a project"):
        other = studio.client.projects.create(
            title=f"boxes {next(_n)}", label_config='<View><Image name="img" value="$image"/>'
            '<RectangleLabels name="box" toName="img"><Label value="car"/></RectangleLabels>'
            '</View>')
    base = ["--images", str(tmp_path / "img"), "--studio-url", studio_server.url]
    refused = labelloop("init", "--from-studio", str(other.id), *base, "--folder",
                        str(tmp_path / "a"), env=env)
    assert refused.returncode == 2 and "expects an Image named 'image'" in refused.stderr
    # Label Studio's own Image Classification template names its Choices "choice".
    with studio.errors("making a project"):
        template = studio.client.projects.create(
            title=f"template {next(_n)}", label_config='<View><Image name="image" '
            'value="$image"/><Choices name="choice" toName="image"><Choice value="Weapons"/>'
            '<Choice value="Violence"/></Choices></View>')
    renamed = labelloop("init", "--from-studio", str(template.id), *base, "--folder",
                        str(tmp_path / "t"), env=env)
    assert renamed.returncode == 2 and "Choices is named 'choice'" in renamed.stderr
    assert "Labeling Interface" in renamed.stderr
    missing = labelloop("init", "--from-studio", "999999", *base, "--folder",
                        str(tmp_path / "b"), env=env)
    assert missing.returncode == 2 and "999999" in missing.stderr
    no_key = labelloop("init", "--from-studio", str(other.id), *base, "--folder",
                       str(tmp_path / "c"), env=cli_env())
    assert no_key.returncode == 2 and "LABEL_STUDIO_API_KEY" in no_key.stderr
    assert not (tmp_path / "a" / "labelloop.toml").exists()
