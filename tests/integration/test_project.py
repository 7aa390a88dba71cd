"""Projects: generated labeling config, create-or-reuse, class mismatches, local images."""

from __future__ import annotations

import httpx
import pytest

from labeling.studio.errors import ProjectMismatch, StudioError
from labeling.studio.project import (
    ImageSource,
    ensure_local_storage,
    ensure_project,
    find_projects,
)
from labeling.tasks.classification import config_classes, label_config

pytestmark = pytest.mark.integration


def test_label_config_is_single_choice_image_classification():
    xml = label_config(["cat", "dog", 'say "hi" & <bye>'])
    assert config_classes(xml) == ("cat", "dog", 'say "hi" & <bye>')
    assert 'choice="single"' in xml and 'value="$image"' in xml
    assert config_classes("<View><Text name='t' value='$t'/></View>") is None


def test_project_is_created_then_found_and_reused(studio, images):
    title = "reuse-project"
    first = ensure_project(studio, title, ["cat", "dog"], images=images)
    # Same classes in another order: the same project.
    again = ensure_project(studio, title, ["dog", "cat"], images=images)
    assert again.id == first.id
    stored = studio.client.projects.get(id=first.id)
    assert config_classes(stored.label_config) == ("cat", "dog")


def test_a_create_the_server_ran_twice_leaves_one_project(studio, images, monkeypatch):
    """Label Studio on SQLite runs a request again after "database is locked", and a project
    create is not atomic there: the first attempt can leave an empty project with the title.
    Simulated here by a create that makes two; the empty older one is deleted, and the next
    lookup finds one project, not "several projects are titled"."""
    title = "created-twice"
    real = studio.client.projects.create
    husk = {}

    def twice(**kwargs):
        husk["id"] = real(**kwargs).id  # the attempt that met the lock
        return real(**kwargs)

    monkeypatch.setattr(studio.client.projects, "create", twice)
    made = ensure_project(studio, title, ["cat", "dog"], images=images)
    monkeypatch.undo()
    assert husk["id"] != made.id
    assert [p["id"] for p in find_projects(studio, title)] == [made.id]
    assert ensure_project(studio, title, ["cat", "dog"], images=images).id == made.id
    # A project of that title that people work in is never touched: "several" stays an error.
    other = studio.client.projects.create(title=title, label_config=label_config(["cat", "dog"]))
    studio.client.projects.import_tasks(id=other.id, request=[{"image": "/data/x.png"}])
    with pytest.raises(ProjectMismatch, match="several Label Studio projects"):
        ensure_project(studio, title, ["cat", "dog"], images=images)
    studio.client.projects.delete(id=other.id)


def test_reusing_a_project_with_other_classes_says_how_they_differ(studio, images):
    title = "mismatch-project"
    ensure_project(studio, title, ["cat", "dog", "bird"], images=images)
    with pytest.raises(ProjectMismatch) as caught:
        ensure_project(studio, title, ["cat", "dog", "fish"], images=images)
    text = str(caught.value)
    assert "in labelloop.toml but not in the project: fish" in text
    assert "in the project but not in labelloop.toml: bird" in text


def test_local_storage_is_registered_once_and_serves_the_images(studio, project, make_items,
                                                                 studio_server):
    first = ensure_local_storage(studio, project)
    assert ensure_local_storage(studio, project) == first
    storages = studio.client.import_storage.local.list(project=project.id)
    assert [s.path for s in storages] == [str(studio_server.images_dir)]

    item = make_items(1)[0]
    url = project.images.url_for(item.path)
    assert url.startswith("/data/local-files/?d=images/")
    served = httpx.get(studio.url + url, headers={"Authorization": f"Token {studio_server.token}"})
    assert served.status_code == 200
    assert served.content == open(item.path, "rb").read()


def test_paths_outside_the_image_folder_are_refused(images, tmp_path):
    outside = tmp_path / "elsewhere.png"
    with pytest.raises(StudioError, match="outside the image folder"):
        images.url_for(str(outside))
    assert images.url_for("https://example.com/a b.png") == "https://example.com/a b.png"
    with pytest.raises(StudioError, match="strict|inside"):
        ImageSource.local(images.document_root, document_root=images.document_root)
