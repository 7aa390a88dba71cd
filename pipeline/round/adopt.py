"""Tasks that people imported into the Label Studio project by hand (not pushed by labelloop)
join the pool once someone has answered them, so their answers become labels.

For each answered task without an item key: its image is found (``pipeline.task_images``: a
local file under the served folder, an upload, an http(s) URL) and checked; a file outside the
image folder is copied into ``<images>/imported/<sha256>.<ext>`` (inside the served folder, so
Label Studio can show it); the file becomes an item; then the task's data gets the ``item_key``
and the local-files URL of that file (the same bytes the person saw; the original URL is kept
as ``imported_from``). The sync that follows reads the task as one of labelloop's, so its
answers go through the same consensus, history and second opinions as any other.

Adopted items are never held out (they were not drawn at random), so the statistics stay
valid. A task whose image cannot be read, or whose image is already an item with its own
task, is left alone and reported with the reason; nothing is deleted or changed in it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from labeling.store import NewItem
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.project.project import Project
from pipeline.task_images import project_task_images
from training.images import open_image

IMPORTED_FOLDER = "imported"
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif",
           "TIFF": ".tif"}


def adopt_answered_tasks(project: Project, studio, sp) -> dict:
    """Adopt every answered hand-made task of the project (see the module docstring)."""
    foreign = [t for t in iter_tasks(studio, sp.id, include="id,data,total_annotations",
                                     all_fields=True)
               if item_key_of(t) is None and int(t.get("total_annotations") or 0) > 0]
    if not foreign:
        return {"adopted": 0, "left": []}
    images = project_task_images(project, studio.url, sp.images)
    tasked = project.store.tasks(sp.id, include_deleted=True)
    adopted, left = 0, []
    for task in foreign:
        tid = int(task["id"])
        found = images.resolve(task)
        if found.path is None:
            left.append(f"task {tid}: {found.reason}")
            continue
        if found.key in tasked:
            left.append(f"task {tid}: its image is already item {found.key} with task "
                        f"{tasked[found.key]}; answer that task instead")
            continue
        path = _inside_image_folder(project, Path(found.path), found.key)
        _add_item(project, path, found.key)
        data = {**task["data"], "item_key": found.key, "image": sp.images.url_for(str(path)),
                "imported_from": task["data"].get("image")}
        with studio.errors(f"giving hand-made task {tid} its item key"):
            studio.client.tasks.update(id=tid, data=data)
        project.store.record_tasks(sp.id, {found.key: tid})
        tasked[found.key] = tid
        adopted += 1
    return {"adopted": adopted, "left": left}


def _inside_image_folder(project: Project, path: Path, key: str) -> Path:
    """``path`` if it lies in the image folder, else its copy there (written once, renamed
    into place, so a kill leaves no half file)."""
    folder = project.config.images_dir
    if folder in path.resolve().parents:
        return path.resolve()
    with Image.open(path) as img:
        suffix = _SUFFIX.get(img.format or "", ".png")
    target = folder / IMPORTED_FOLDER / (key.removeprefix("sha256:") + suffix)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target


def _add_item(project: Project, path: Path, key: str) -> None:
    if project.store.item(key) is not None:
        return
    with open_image(path) as img:
        width, height = img.size
    project.store.add_items([NewItem(key=key, path=str(path), size_bytes=path.stat().st_size,
                                     width=width, height=height)])
