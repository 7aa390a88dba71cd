"""A labelloop project's side in Label Studio: labeling config, project, and image URLs.

The labeling config, the pre-annotations and the answers' format come from the project's task
type (``labeling.tasks``; image classification by default).

Tasks carry ``data.image`` (the URL Label Studio shows) and ``data.item_key`` (labelloop's key,
which is how everything maps back: task ids are global across projects).

Images are reached either as http(s) URLs, passed through unchanged, or as local files served by
Label Studio from a local-files storage for the image folder: ``/data/local-files/?d=<path
relative to the server's LOCAL_FILES_DOCUMENT_ROOT>``. The embedded server's document root is
the image folder's parent (``server.local_files_root``).

Items in S3 (``s3://bucket/key``) reach Label Studio as presigned GET URLs: plain http(s) that
any browser opens until they expire (7 days at most), with no credentials in Label Studio and no
storage to set up in it. The signing function comes from the caller (``pipeline``), as this
package does not talk to S3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from labeling.studio.errors import ProjectMismatch, StudioError
from labeling.studio.limits import TITLE_MAX, TITLE_MIN
from labeling.studio.server import local_files_root
from labeling.tasks.base import IMAGE_NAME, LABEL_NAME, TaskType
from labeling.tasks.registry import DEFAULT_TASK, get_task_type

if TYPE_CHECKING:  # the SDK takes a second to import; only its type is needed here
    from labeling.studio.connection import Studio

STORAGE_TITLE = "labelloop images"
LOCAL_FILES_PATH = "/data/local-files/"
S3_SCHEME = "s3://"


@dataclass(frozen=True)
class ImageSource:
    """How item paths become image URLs. ``images_dir`` ``None``: no local files served.
    ``sign``: ``s3://`` path -> presigned http(s) URL, for items in S3 (``None``: none)."""

    images_dir: Path | None = None
    document_root: Path | None = None
    sign: Callable[[str], str] | None = None

    @classmethod
    def local(cls, images_dir: Path, document_root: Path | None = None) -> ImageSource:
        """Local files under ``images_dir``, served from ``document_root`` (default: its
        parent, as the embedded server is set up)."""
        images_dir = Path(images_dir).resolve()
        root = Path(document_root).resolve() if document_root else local_files_root(images_dir)
        if root not in images_dir.parents:
            raise StudioError(f"the image folder {images_dir} must be inside Label Studio's "
                              f"local-files document root {root} (and not the root itself)")
        return cls(images_dir=images_dir, document_root=root)

    def url_for(self, path: str) -> str:
        """The task's image URL for an item path; http(s) URLs pass through unchanged, and an
        ``s3://`` object gets a freshly signed URL."""
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith(S3_SCHEME):
            if self.sign is None:
                raise StudioError(f"item {path} is in S3, but this project's images are not: "
                                  f"set [project] images to its s3:// prefix")
            return self.sign(path)
        if self.images_dir is None or self.document_root is None:
            raise StudioError(f"item {path} is a local file but no image folder is served; "
                              f"use http(s) URLs or serve [project] images as local files")
        resolved = Path(path).resolve()
        if self.images_dir not in resolved.parents:
            raise StudioError(f"item {path} is outside the image folder {self.images_dir}; "
                              f"Label Studio serves only files inside it: move the file there "
                              f"and ingest it again")
        relative = resolved.relative_to(self.document_root).as_posix()
        return f"{LOCAL_FILES_PATH}?d=" + quote(relative, safe="/")

    def problem(self, path: str) -> str | None:
        """Why an item's image cannot be shown to people now (``url_for`` refuses it, or its
        local file is gone), or ``None``. The push holds such items back until fixed."""
        try:
            self.url_for(path)
        except StudioError as err:
            return str(err)
        if not path.startswith(("http://", "https://", S3_SCHEME)) and not Path(path).is_file():
            return (f"item {path}: the file is gone; put it back, or if it was moved within "
                    f"the image folder, put it back under its old name")
        return None

    def signed_for(self, url: str, path: str) -> bool:
        """Whether ``url`` is a signed URL (made at any time) of the S3 object ``path``: the
        same address once the signature's query is left out."""
        if self.sign is None or not path.startswith(S3_SCHEME):
            return False
        return _unsigned(url) == _unsigned(self.sign(path))

    def path_for(self, url: str) -> Path | None:
        """The local file a task's image URL names (the inverse of ``url_for``), resolved;
        ``None`` for an http(s) URL or a URL that is not a local-files one. The path may lie
        outside the image folder: a task edited in Label Studio can point anywhere."""
        parts = urlsplit(url)
        if self.document_root is None or parts.scheme or parts.path != LOCAL_FILES_PATH:
            return None
        names = parse_qs(parts.query).get("d")
        return (self.document_root / names[0]).resolve() if names else None


def _unsigned(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class StudioProject:
    """A Label Studio project that belongs to a labelloop project."""

    id: int
    title: str
    classes: tuple[str, ...]
    images: ImageSource
    task: TaskType = field(default_factory=lambda: get_task_type(DEFAULT_TASK))


def ensure_project(studio: Studio, title: str, classes: Sequence[str], *,
                   images: ImageSource, task: TaskType | None = None,
                   found: list[dict] | None = None) -> StudioProject:
    """Find the project titled ``title`` and check its classes, or create it. ``found``: the
    projects ``find_projects`` just listed under ``title``, if the caller has them.

    Raises ``ProjectMismatch`` if the existing project's labeling config is not labelloop's or
    its classes differ from ``classes`` (the message lists what was added and what is missing).
    """
    classes = tuple(classes)
    task = task or get_task_type(DEFAULT_TASK)
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        raise StudioError(f"Label Studio project titles have {TITLE_MIN} to {TITLE_MAX} "
                          f"characters, {title!r} has {len(title)}; set [studio] project_title")
    found = find_projects(studio, title) if found is None else found
    if len(found) > 1:
        raise ProjectMismatch(f"several Label Studio projects are titled {title!r} (ids "
                              f"{', '.join(str(p['id']) for p in found)}); rename all but one, or "
                              f"set another [studio] project_title")
    if found:
        project = found[0]
        check_classes(project, classes, task)
        project_id = int(project["id"])
    else:
        config = task.label_config(classes)
        with studio.errors(f"creating project {title!r}"):
            created = studio.client.projects.create(title=title, label_config=config)
        project_id = int(created.id)
        _drop_husks(studio, title, project_id, config)
    result = StudioProject(id=project_id, title=title, classes=classes, images=images, task=task)
    if images.images_dir is not None:
        ensure_local_storage(studio, result)
    return result


def _drop_husks(studio: Studio, title: str, kept: int, label_config: str) -> None:
    """Delete the empty projects titled ``title`` that appeared while ours was made.

    Label Studio on SQLite answers a request that met a locked database by running it again
    (its ``DatabaseIsLockedRetryMiddleware``), and creating a project there is not atomic: the
    failed attempt can leave a project behind, and the retry makes a second one with the same
    title (seen in this project's CI on a busy machine). No such project existed when
    ``ensure_project`` looked just before; one with the same config and no task is that husk.
    """
    for p in find_projects(studio, title, fields="task_number"):
        if (int(p["id"]) != kept and p.get("label_config") == label_config
                and not p.get("task_number")):
            with studio.errors(f"deleting the empty duplicate project {p['id']} ({title!r})"):
                studio.client.projects.delete(id=int(p["id"]))


def find_projects(studio: Studio, title: str, *, fields: str = "") -> list[dict]:
    """The projects whose title is exactly ``title`` (id and label_config of each, and
    ``fields``, comma-separated)."""
    include = "id,title,label_config" + (f",{fields}" if fields else "")
    body = studio.get_json("api/projects", {"title": title, "page_size": 100,
                                            "include": include},
                           action=f"looking up project {title!r}")
    rows = body.get("results", []) if isinstance(body, dict) else body
    return sorted((p for p in rows if p.get("title") == title), key=lambda p: p["id"])


def check_classes(project: dict, classes: tuple[str, ...], task: TaskType) -> None:
    """Raise ``ProjectMismatch`` if the project's config disagrees with ``classes``."""
    title = project.get("title")
    found = task.config_classes(project.get("label_config") or "")
    if found is None:
        raise ProjectMismatch(
            f"Label Studio project {title!r} (id {project['id']}) exists but its labeling config "
            f"is not labelloop's for {task.name} (an Image named {IMAGE_NAME!r} and labels "
            f"named {LABEL_NAME!r}); set another [studio] project_title")
    added = [c for c in classes if c not in found]
    missing = [c for c in found if c not in classes]
    if added or missing:
        parts = []
        if added:
            parts.append(f"in labelloop.toml but not in the project: {', '.join(added)}")
        if missing:
            parts.append(f"in the project but not in labelloop.toml: {', '.join(missing)}")
        raise ProjectMismatch(
            f"Label Studio project {title!r} (id {project['id']}) has other classes than "
            f"[project] classes ({'; '.join(parts)}); make them agree (edit the project's "
            f"labeling config or labelloop.toml), or set another [studio] project_title (and, "
            f"if this project holds the tasks, run `labelloop studio new-project`)")


def ensure_local_storage(studio: Studio, project: StudioProject) -> int:
    """Register the image folder as the project's local-files storage (once); its id."""
    path = str(project.images.images_dir)
    local = studio.client.import_storage.local
    existing = studio.read(f"listing the storages of project {project.id}", local.list,
                           project=project.id)
    for storage in existing:
        if storage.path is not None and str(storage.path).rstrip("/") == path:
            return int(storage.id)
    try:
        with studio.errors(f"registering {path} as local storage of project {project.id}"):
            created = local.create(project=project.id, path=path, use_blob_urls=True,
                                   title=STORAGE_TITLE)
    except StudioError as err:
        raise StudioError(f"{err} (Label Studio serves local files only from a strict "
                          f"subfolder of its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, with "
                          f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true; the embedded server "
                          f"sets both)") from None
    return int(created.id)
