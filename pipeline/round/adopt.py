"""Tasks that people imported into the Label Studio project by hand (not pushed by labelloop)
join the pool, so their answers become labels and they are never pushed a second time.

For each task without an item key (or with one this store does not hold): its image is found
(``pipeline.task_images``: a local file under the served folder, an upload, an http(s) URL) and
decoded; a file outside the image folder is copied into ``<images>/imported/<sha256>.<ext>``
(renamed into place: a kill leaves no half file), so the pool stays in one folder; the file
becomes an item, and the store's task table records the task as that item's. Nothing in Label
Studio changes: the task keeps its data and URL. The sync reads the task as one of labelloop's
(its item named by the store, its image checked against the item's bytes through the same
cache), so its answers go through the same consensus, history and second opinions; push never
makes a second task for the item.

Adopted items are never held out (nobody drew them at random), so the statistics stay valid. A
task whose image cannot be read, or whose image is already an item with its own task, is left
as it is and reported with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from labeling.store import NewItem
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.ingest import record_thumbnails, thumbnail
from pipeline.project.project import Project
from pipeline.task_images import TaskImages
from training.images import open_image

IMPORTED_FOLDER = "imported"
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif",
           "TIFF": ".tif"}


def adopt_hand_made_tasks(project: Project, studio, sp, images: TaskImages) -> dict:
    """Adopt every hand-made task of the project (see the module docstring)."""
    tasked = project.store.tasks(sp.id, include_deleted=True)
    known = set(tasked.values())
    listed = [t for t in iter_tasks(studio, sp.id, include="id,data", all_fields=True)
              if int(t["id"]) not in known]
    # A task naming an item this store lacks is adopted too: an item_key of the user's own,
    # or labelloop's from another workspace on the same project (one lost, or a second
    # machine). Its answers were kept as no item's and never read again (a user's review).
    named = {key for key in map(item_key_of, listed) if key is not None}
    in_store = set(project.store.items_by_key(named)) if named else set()
    foreign = [t for t in listed if item_key_of(t) not in in_store]
    if not foreign:
        return {"adopted": 0, "left": []}
    adopted, left, thumbs = 0, [], {}
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
        path = inside_image_folder(project, Path(found.path), found.key)
        thumb = add_item(project, path, found.key)
        if thumb is not None:
            thumbs[found.key] = thumb
        project.store.record_tasks(sp.id, {found.key: tid})
        tasked[found.key] = tid
        adopted += 1
    record_thumbnails(project.store, thumbs)  # once: it reads every thumbnail in the store
    return {"adopted": adopted, "left": left}


def inside_image_folder(project: Project, path: Path, key: str) -> Path:
    """``path`` if it lies in the image folder, else its copy there."""
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


def add_item(project: Project, path: Path, key: str) -> bytes | None:
    """``path`` as the pool item ``key``, and its thumbnail (None if the item existed: nothing
    written). The caller records the thumbnails of a batch together."""
    if project.store.item(key) is not None:
        return None
    with open_image(path) as img:
        width, height = img.size
        thumb = thumbnail(img)
    project.store.add_items([NewItem(key=key, path=str(path), size_bytes=path.stat().st_size,
                                     width=width, height=height)])
    return thumb
