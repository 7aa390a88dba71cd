"""``labelloop init --from-studio ID``: a labelloop project attached to a Label Studio project
that already exists, with its tasks as pool items and its annotations as people's labels.

- The classes come from the project's labeling config (it must be one labelloop reads: an
  ``Image`` named ``image`` and single ``Choices`` named ``label``; another config is refused
  with what labelloop expects). ``[studio] url`` and ``project_title`` point at the project.
- Every task's image is found and checked as ``labelloop serve`` finds it
  (``pipeline.task_images``) and joins the pool (copied into ``<images>/imported/`` when it is
  not in the image folder); the store's task table records each task as its item's
  (``pipeline.round.adopt``). A task whose image cannot be read is listed with the reason.
- Its annotations are read with the same sync as every round (consensus, each person's answer
  kept), so they become the items' human labels.

Nothing in the Label Studio project changes: tasks keep their data and URLs; the first round
later registers the image folder as a local storage (to push new tasks). Run twice, it adds
nothing: items, task records and labels are keyed by content and task id. Imported history is
never held out (nobody drew it at random): the loop's own random picks start the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree

from labeling.studio.connection import connect
from labeling.studio.project import StudioProject
from labeling.studio.sync import sync_annotations
from labeling.tasks.registry import get_task_type
from pipeline.project.config import CONFIG_NAME, ConfigError, load_config, registry_safe_name
from pipeline.project.project import open_project
from pipeline.project.studio import image_source, project_title
from pipeline.project.workspace import init_project
from pipeline.round.adopt import adopt_hand_made_tasks
from pipeline.round.sync import task_keys
from pipeline.task_images import project_task_images

TASK = "classification"


def init_from_studio(folder: Path, *, project_id: int, images: Path, studio_url: str,
                     env: Mapping[str, str]) -> dict:
    """Write (or reuse) ``folder``'s config for Label Studio project ``project_id`` and bring
    its tasks and annotations in; returns what it did."""
    key = env.get("LABEL_STUDIO_API_KEY")
    if not key:
        raise ConfigError("--from-studio reads the project with the key in LABEL_STUDIO_API_KEY "
                          "(never on the command line); set it and run again")
    studio = connect(studio_url, key)
    found = studio.get_json(f"api/projects/{project_id}", {"include": "id,title,label_config"},
                            action=f"reading project {project_id}")
    task = get_task_type(TASK)
    classes = task.config_classes(found.get("label_config") or "")
    if not classes:
        raise ConfigError(f"Label Studio project {project_id}'s labeling config is not one "
                          f"labelloop reads: it expects an Image named 'image' and single "
                          f"Choices named 'label' over it, e.g.\n{task.label_config(['a', 'b'])}"
                          + _renaming_help(found.get("label_config") or ""))
    title = str(found["title"])
    config_path = _config(folder, title=title, classes=classes, images=images,
                          studio_url=studio.url)
    project = open_project(load_config(config_path), env=dict(env))
    try:
        sp = StudioProject(id=project_id, title=title, classes=tuple(project.classes),
                           images=image_source(project.config), task=task)
        files = project_task_images(project, studio.url, sp.images)
        adopted = adopt_hand_made_tasks(project, studio, sp, files)
        report = sync_annotations(studio, project.store, sp, same_image=files.same_image,
                                  task_keys=task_keys(project.store, sp.id))
        return {"config": str(config_path), "classes": list(classes), "title": title,
                "tasks": report.tasks, "items_added": adopted["adopted"],
                "not_added": adopted["left"], "labels": len(report.labeled),
                "unchanged": len(report.unchanged), "rejected": len(report.rejected)}
    finally:
        project.close()


def _renaming_help(xml: str) -> str:
    """What to do where the config is labelloop's but for the Choices' name (Label Studio's
    own Image Classification template names it "choice")."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return ""
    choices = [e.get("name") for e in root.iter("Choices") if e.get("toName") == "image"]
    if len(choices) != 1 or choices[0] == "label" or len(list(root.iter("Image"))) != 1:
        return ""
    return (f"\nThis project's Choices is named {choices[0]!r}: rename it to 'label' in the "
            "project's Settings > Labeling Interface (Label Studio takes the rename only "
            "while the project has no annotations)")


def _config(folder: Path, *, title: str, classes, images: Path, studio_url: str) -> Path:
    """The config of ``folder`` for this Label Studio project: written now, or the one a first
    run wrote (checked to be for the same project)."""
    path = folder.resolve() / CONFIG_NAME
    if path.exists():
        config = load_config(path)
        where = config.studio.url or "the embedded server"
        if (config.studio.url.rstrip("/"), project_title(config)) != (studio_url.rstrip("/"),
                                                                       title):
            raise ConfigError(f"{path} already exists for another project "
                              f"({project_title(config)!r} at {where}); init another folder")
        if tuple(config.project.classes) != tuple(classes):
            raise ConfigError(f"{path}'s classes ({', '.join(config.project.classes)}) differ "
                              f"from the Label Studio project's ({', '.join(classes)})")
        return path
    images.mkdir(parents=True, exist_ok=True)
    # The name is the registry's model name too, which may not hold '/' or ':' (titles in
    # Label Studio often do: "Batch 2: cars"); the title stays the project's own.
    return init_project(folder, images=images, classes=list(classes),
                        name=registry_safe_name(title), studio_url=studio_url,
                        project_title=title)
