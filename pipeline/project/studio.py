"""Where the project's Label Studio is, the key for it, and its Label Studio project.

This is the boundary where the Label Studio URL and key are read: ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY`` from the environment win, then ``[studio] url`` / ``api_key_file``
from ``labelloop.toml``, then the embedded server (its URL and its token file). Everything below
gets them as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labeling.studio import server
from labeling.studio.accounts import count_annotators, list_annotators
from labeling.studio.errors import EmbeddedServerStopped, ProjectMismatch, StudioError
from labeling.tasks.registry import get_task_type
from pipeline.project.config import Config

if TYPE_CHECKING:
    from labeling.store import LabelStore
    from labeling.studio.connection import Studio
    from labeling.studio.project import ImageSource, StudioProject

# The modules that talk to Label Studio load its SDK (about a second, with pandas); they are
# imported inside the functions that use them, so `labelloop --help` does not wait for it.


@dataclass(frozen=True)
class StudioSettings:
    """Where Label Studio is and the key for it; ``key_source`` says where the key came from
    (for messages; never the key itself)."""

    url: str
    api_key: str | None
    key_source: str
    embedded: bool

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        return (f"StudioSettings(url={self.url!r}, key_source={self.key_source!r}, "
                f"embedded={self.embedded})")


def uses_embedded(config: Config, env: Mapping[str, str]) -> bool:
    """Whether the project's Label Studio is the embedded server: no URL in the environment
    (``LABEL_STUDIO_URL``) nor in ``[studio] url``."""
    return not (env.get("LABEL_STUDIO_URL") or config.studio.url)


def studio_settings(config: Config, env: Mapping[str, str]) -> StudioSettings:
    """The URL and key to use: environment, then the config, then the embedded server."""
    embedded = uses_embedded(config, env)
    if embedded:
        found = server.status(config.studio_dir)
        url = found.url or f"http://127.0.0.1:{config.studio.port}"
    else:
        url = env.get("LABEL_STUDIO_URL") or config.studio.url
    if env.get("LABEL_STUDIO_API_KEY"):
        return StudioSettings(url, env["LABEL_STUDIO_API_KEY"], "LABEL_STUDIO_API_KEY", embedded)
    if config.studio.api_key_file is not None:
        path = config.path(config.studio.api_key_file)
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            why = getattr(err, "strerror", None) or "not UTF-8 text"
            raise StudioError(f"[studio] api_key_file {path} cannot be read ({why}); fix the "
                              f"path or set LABEL_STUDIO_API_KEY") from None
        return StudioSettings(url, key, f"[studio] api_key_file {path}", embedded)
    if embedded:
        return StudioSettings(url, server.read_token(config.studio_dir),
                              f"the embedded server's token file in {config.studio_dir}", True)
    return StudioSettings(url, None, "nowhere", False)


def image_source(config: Config) -> ImageSource:
    """Local files under ``[project] images``, served from their parent folder (the embedded
    server's document root; an external server must be set up the same way). For images in
    S3: presigned URLs, valid ``[studio] s3_url_expiry_s`` (the endpoint Label Studio's users
    reach them at is boto3's, ``AWS_ENDPOINT_URL``)."""
    from labeling.studio.project import ImageSource

    if config.images_remote:
        from functools import partial

        from training.sources import presigned_url

        return ImageSource(sign=partial(presigned_url, expires_s=config.studio.s3_url_expiry_s))

    root = config.path(config.studio.local_files_root) if config.studio.local_files_root else None
    return ImageSource.local(config.images_dir, root)


def connect_studio(config: Config, env: Mapping[str, str], *, timeout: float | None = None
                   ) -> Studio:
    """A checked connection to the project's Label Studio (see ``studio_settings``)."""
    from labeling.studio.connection import connect

    settings = studio_settings(config, env)
    if settings.embedded and server.status(config.studio_dir).state in ("stopped", "stale"):
        raise EmbeddedServerStopped(
            f"the embedded Label Studio ({settings.url}) is not running: start it with "
            f"`labelloop studio start`, or set [studio] url to a Label Studio you run")
    return connect(settings.url, settings.api_key, timeout=timeout or config.studio.timeout_s)


def annotator_accounts(config: Config) -> int:
    """The people labelloop counts on the embedded server: ``[studio] annotators`` (what the
    quickstart makes) or the accounts ``labelloop studio add-annotator`` made, whichever is
    more. 0 where Label Studio is the user's own: labelloop does not count its people."""
    if config.studio.url:
        return 0
    return max(config.studio.annotators, count_annotators(config.studio_dir))


def annotator_emails(config: Config) -> set[str]:
    """The emails of the accounts ``labelloop studio add-annotator`` (or the quickstart) made
    on the embedded server, as sync names who answered; empty where Label Studio is the
    user's own. An account whose record cannot be read is left out (``labelloop studio
    annotators`` says which)."""
    if config.studio.url:
        return set()
    return {a.email for a in list_annotators(config.studio_dir, skip_unreadable=True)}


def follow_tasks(studio: Studio, store: LabelStore, title: str, titled: list[int]) -> None:
    """Raise ``StudioError`` when the store's tasks are in Label Studio projects none of which
    is titled ``title`` (``titled``: the ids of those that are). Found by title alone, a project
    renamed in Label Studio (or a changed [studio] project_title) made a second project: every
    waiting item was sent again, and the answers given in the first were never read. Renamed:
    the message names its title now. Deleted: its tasks are marked deleted in the store (they
    are gone; what was synced from them stays) and the message says the next run starts a new
    project, which it then does."""
    live = store.task_projects()
    if not live or set(live) & set(titled):
        return
    gone = []
    for pid in sorted(live, key=lambda p: -live[p]):
        found = studio.get_json(f"api/projects/{pid}", {"include": "id,title"},
                                action=f"looking up project {pid}", missing_ok=True)
        if found is not None:
            raise ProjectMismatch(
                f"this project's {live[pid]} task(s) are in project {pid} of the Label Studio "
                f"at {studio.url}, which is titled {found.get('title')!r} now, not {title!r}: "
                f"set [studio] project_title = {found.get('title')!r}, or rename the project "
                f"back; to go on in a new project instead, run `labelloop studio new-project`")
        gone.append(pid)
    for pid in gone:
        store.mark_project_deleted(pid)
    raise StudioError(
        f"Label Studio project(s) {', '.join(map(str, gone))} at {studio.url}, which held this "
        f"project's {sum(live.values())} task(s), are gone (deleted? or another Label Studio "
        f"or account than the one they were made on); the answers synced from them stay in the "
        f"store. Their tasks are now marked deleted: the next run makes project {title!r} and "
        f"sends the items that wait for people again. A `labelloop serve` still serves the old "
        f"project: restart it after that run, then `labelloop studio connect` again")


def project_title(config: Config) -> str:
    """The Label Studio project's title: ``[studio] project_title``, else the project name."""
    return config.studio.project_title or config.project.name


def open_studio_project(config: Config, studio: Studio, *, create: bool = True,
                        store: LabelStore | None = None) -> StudioProject:
    """The project's Label Studio project: found (classes checked) or, with ``create``, made.
    With ``store``: refused while the store's tasks are in another project (``follow_tasks``)."""
    from labeling.studio.project import ensure_project, find_projects

    title = project_title(config)
    titled = find_projects(studio, title) if store is not None or not create else None
    if store is not None:
        follow_tasks(studio, store, title, [int(p["id"]) for p in titled])
    if not create and not titled:
        raise StudioError(f"Label Studio at {studio.url} has no project titled {title!r}; "
                          f"push tasks first (a labelloop round does), or set "
                          f"[studio] project_title")
    return ensure_project(studio, title, config.project.classes, images=image_source(config),
                          task=get_task_type(config.project.task), found=titled)
