"""``labelloop studio start|stop|status|push|sync|connect`` and ``labelloop annotate-sim``.

The URL and key are resolved by ``pipeline.project.studio``. The key is never printed; ``start``
names the file that holds it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from labeling.store import LabelStore, StoreError
from labeling.studio import server
from labeling.studio.errors import StudioError
from pipeline.cli.common import ConfigOption, console, fail, load, opened
from pipeline.project.databases import DatabaseError
from pipeline.project.lock import LockHeld, WorkspaceLock
from pipeline.project.studio import connect_studio, open_studio_project, project_title
from pipeline.project.workspace import ensure_workspace

if TYPE_CHECKING:
    from labeling.studio.sync import SyncReport

# The modules that talk to Label Studio load its SDK (about a second, with pandas); they are
# imported inside the functions that use them, so `labelloop --help` does not wait for it.

# Plain text out: paths and messages hold "[studio]"-style brackets that are not markup.
out = Console(highlight=False, markup=False, soft_wrap=True)

studio_app = typer.Typer(help="The embedded Label Studio server; pushing tasks and syncing "
                         "annotations by hand.",
                         no_args_is_help=True)


@contextmanager
def holding_workspace(cfg, command: str):
    """The workspace lock for a command that writes tasks or labels, as `labelloop round` holds
    it: a push beside another push or a round sent the same items twice, and a sync beside a
    round marked the round's new tasks deleted."""
    ensure_workspace(cfg)
    try:
        with WorkspaceLock(cfg.workspace_dir / "lock", command=command):
            yield
    except LockHeld as err:
        fail(str(err), code=3)


def open_store(cfg) -> LabelStore:
    """The project's label store, or one error line and exit 2."""
    try:
        return LabelStore(cfg.database_urls(os.environ).store)
    except (StoreError, DatabaseError) as err:
        fail(str(err))
    raise AssertionError("unreachable")


# ---- commands ------------------------------------------------------------------------------
@studio_app.command("start")
def start_command(
    config: Path | None = ConfigOption,
    timeout: float = typer.Option(server.START_TIMEOUT_S,
                                  help="Seconds to wait for the server to answer."),
) -> None:
    """Start the embedded Label Studio on 127.0.0.1 (a no-op if it is already running)."""
    cfg = load(config)
    if cfg.studio.url:
        fail(f"[studio] url is set to {cfg.studio.url}: this project uses that server, not "
              f"the embedded one; empty [studio] url to use the embedded server")
    try:
        exe = server.resolve_executable(cfg.studio.executable,
                                        search_path=os.environ.get("PATH", ""))
        ensure_workspace(cfg)
        with console.status("starting Label Studio (the first start takes about a minute)"):
            info = server.start(cfg.studio_dir, port=cfg.studio.port, images_dir=cfg.images_dir,
                                executable=exe, username=cfg.studio.username, timeout=timeout,
                                database=cfg.database_urls(os.environ).studio)
    except (StudioError, DatabaseError) as err:
        fail(str(err))
    state = "already running" if info.already_running else "started"
    out.print(f"Label Studio {state}: {info.url}  (PID {info.pid}, log {info.log_file})")
    out.print(f"login: {info.username}  password in {info.password_file}")
    # The key itself is never printed: a scheduled or CI start's output ends up in logs.
    out.print(f"API key in {info.token_file} (read by labelloop; mode 0600)")


@studio_app.command("add-annotator")
def add_annotator_command(
    name: str = typer.Argument(..., help="Account name: lowercase letters, digits, - or _."),
    config: Path | None = ConfigOption,
) -> None:
    """Make an annotator account on the embedded Label Studio (its own login and key, kept in
    0600 files beside the admin's; never printed)."""
    from labeling.studio.accounts import add_annotator

    cfg = load(config)
    if cfg.studio.url:
        fail(f"[studio] url is set to {cfg.studio.url}: add annotators in that server's own "
             f"organization page; labelloop reads who answered from the server")
    try:
        studio = connect_studio(cfg, os.environ)
        made = add_annotator(studio, cfg.studio_dir, name)
    except StudioError as err:
        fail(str(err))
    out.print(f"annotator {made.name}: login {made.email}, password in {made.password_file}, "
              f"API key in {made.key_file} (mode 0600)")
    if cfg.loop.reference_error == 0:
        out.print('note: [loop] reference_error = 0 assumes people are always right; with '
                  'several people, set it to "measured" so that the certificate and the '
                  "accept step count their errors", markup=False)


@studio_app.command("annotators")
def annotators_command(config: Path | None = ConfigOption) -> None:
    """The annotator accounts made for the embedded Label Studio."""
    from labeling.studio.accounts import list_annotators

    cfg = load(config)
    try:
        found = list_annotators(cfg.studio_dir)
    except StudioError as err:
        fail(str(err))
    if not found:
        out.print("no annotator accounts yet; add one with `labelloop studio add-annotator NAME`")
    for a in found:
        out.print(f"{a.name}: login {a.email} (user {a.user_id}), key in {a.key_file}")


@studio_app.command("stop")
def stop_command(config: Path | None = ConfigOption) -> None:
    """Stop the embedded Label Studio (exactly the PID it was started as)."""
    cfg = load(config)
    try:
        stopped = server.stop(cfg.studio_dir)
    except StudioError as err:
        fail(str(err))
    out.print("Label Studio stopped" if stopped else "Label Studio was not running")


@studio_app.command("status")
def status_command(config: Path | None = ConfigOption) -> None:
    """Show whether the embedded Label Studio runs, where, and where its login is."""
    cfg = load(config)
    if cfg.studio.url:
        out.print(f"this project uses the Label Studio at {cfg.studio.url} ([studio] url)")
        return
    try:
        found = server.status(cfg.studio_dir)
    except StudioError as err:
        fail(str(err))
    out.print(f"embedded Label Studio: {found.state}")
    if found.pid is not None:
        out.print(f"PID {found.pid}  url {found.url or '-'}  log {found.log_file}")
    if found.username:
        out.print(f"login: {found.username}  password in "
                  f"{server.ServerFiles(cfg.studio_dir).password_file}")
    if found.token_file is not None:
        out.print(f"API key in {found.token_file}")
    if found.state == "stale":
        out.print("the PID file is stale; `labelloop studio start` replaces it")


@studio_app.command("connect")
def connect_command(
    config: Path | None = ConfigOption,
    url: str = typer.Option("", help="The backend's URL as Label Studio reaches it (default: "
                            "http://127.0.0.1:<\\[studio] backend_port>)."),
) -> None:
    """Connect `labelloop serve` to the project in Label Studio ("Connect model"), so that it
    predicts tasks people open or import and its Train button runs a round. Start `labelloop
    serve` first: Label Studio checks the backend while connecting."""
    from labeling.studio.ml_backend import connect_backend

    cfg = load(config)
    url = url or f"http://127.0.0.1:{cfg.studio.backend_port}"
    ensure_workspace(cfg)
    store = open_store(cfg)
    try:
        studio = connect_studio(cfg, os.environ)
        project = open_studio_project(cfg, studio, store=store)
        got = connect_backend(studio, project.id, url, title="labelloop")
    except StudioError as err:
        fail(str(err))
    finally:
        store.close()
    state = "connected" if got.created else "already connected"
    out.print(f"model backend {url} {state} to Label Studio project {project.id} "
              f"(backend id {got.backend_id})")


@studio_app.command("sync")
def sync_command(config: Path | None = ConfigOption) -> None:
    """Pull new and changed annotations into the label store as human labels, as a round's
    sync does: tasks imported by hand adopted, second opinions asked where answers call for
    them."""
    from pipeline.round.sync import ask_opinions, pull

    with opened(config, lock="labelloop studio sync") as project:
        cfg = project.config
        try:
            studio = connect_studio(cfg, os.environ)
            # create=False: a sync makes no Label Studio project; a round does.
            project.studio = (studio, open_studio_project(cfg, studio, create=False,
                                                          store=project.store))
        except StudioError as err:
            fail(str(err))
        try:
            report, adopted = pull(project)
        except StudioError as err:
            fail(f"{err} (nothing was written; run the sync again)")
        asked = ask_opinions(project)
    print_sync_report(report)
    if adopted["adopted"]:
        out.print(f"adopted {adopted['adopted']} task(s) imported by hand into the pool")
    for why in adopted["left"][:20]:
        out.print(f"not adopted: {why}", markup=False)
    if asked:
        out.print(f"second opinions asked on {asked} task(s)")


@studio_app.command("new-project")
def new_project_command(config: Path | None = ConfigOption) -> None:
    """Go on in a new Label Studio project: the tasks of the current one stop counting (the
    answers synced from them stay), and the next round makes the project titled \\[studio]
    project_title and sends the items that wait for people again. Sync first: answers not
    synced yet are not read. If the current project still has that title, set another one
    first: a round uses the project its title finds (and takes its tasks back)."""
    cfg = load(config)
    with holding_workspace(cfg, "labelloop studio new-project"):
        store = open_store(cfg)
        try:
            left = store.task_projects()
            for project_id in left:
                store.mark_project_deleted(project_id)
        finally:
            store.close()
    if not left:
        out.print("no Label Studio project holds this project's tasks; the next round makes "
                  "one")
        return
    out.print(f"left Label Studio project(s) {', '.join(map(str, sorted(left)))} "
              f"({sum(left.values())} task(s)); the next round makes project "
              f"{project_title(cfg)!r} and sends the items that wait for people")


@studio_app.command("push")
def push_command(
    limit: int = typer.Option(100, min=1, help="Push at most this many items."),
    config: Path | None = ConfigOption,
) -> None:
    """Send unlabeled items without a task to Label Studio, without pre-annotations (for a
    cold start by hand; a labelloop round pushes its picks with the model's predictions)."""
    from labeling.seen_files import unusable_items
    from labeling.studio.push import PushItem, push_tasks
    from pipeline.round.push import image_problem

    cfg = load(config)
    with holding_workspace(cfg, "labelloop studio push"):
        store = open_store(cfg)
        try:
            studio = connect_studio(cfg, os.environ)
            project = open_studio_project(cfg, studio, store=store)
            labeled, tasks = store.current_labels(), store.tasks(project.id)
            todo = [i for i in store.items(status="ok")
                    if i.key not in labeled and i.key not in tasks]
            # As a round's push: an image that cannot be shown waits (file gone, outside the
            # folder, another image in it now). Checked in order until `limit` can go, not the
            # whole pool.
            send, held, unusable = [], [], unusable_items(store)
            for item in todo:
                if len(send) >= limit:
                    break
                why = image_problem(project, unusable, item.key, item.path)
                (held if why else send).append(why or PushItem(item.key, item.path))
            result = push_tasks(studio, store, project, send)
        except StudioError as err:
            fail(f"{err} (pushing again is safe: tasks that arrived are not sent twice)")
        finally:
            store.close()
    out.print(f"pushed {len(result.created)} new task(s) to project {project.id} "
              f"({len(result.existing)} were already there); {studio.url}/projects/{project.id}")
    if held:
        out.print(f"not sent: {len(held)} item(s) whose image cannot be shown; e.g. "
                  f"{held[0]}", markup=False)


def annotate_sim_command(
    truth: Path = typer.Option(..., "--truth", help="Answer key: a CSV with path,label (a "
                               "detection project: the dataset's boxes.json)."),
    noise: float = typer.Option(0.05, min=0.0, max=1.0, help="Share of wrong answers (boxes: "
                                "faults per true box)."),
    skip: float = typer.Option(0.02, min=0.0, max=1.0, help="Share of skipped tasks."),
    keep_shown: float = typer.Option(0.0, min=0.0, max=1.0, help="Boxes: share of tasks with "
                                     "a pre-annotation where it is kept as shown."),
    limit: int | None = typer.Option(None, min=1, help="Answer at most this many tasks."),
    seed: int = typer.Option(0, help="Seed of the simulated annotator's choices."),
    crowd: int = typer.Option(0, min=0, help="Answer as a crowd of simulated accounts ann1 "
                              "... annN (made as needed; other accounts never answer) whose "
                              "error rates average --noise, concentrated on hard images and "
                              "look-alike classes, with the crowd's own 2% of skips; one of "
                              "three or more often accepts the shown guess. Three passes with "
                              "a sync between, as people who keep working (second opinions "
                              "answered). One class per image only."),
    config: Path | None = ConfigOption,
) -> None:
    """Answer pending Label Studio tasks from ground truth, as a (noisy) annotator would."""
    from labeling.boxes import BoxError
    from labeling.studio.annotator_sim import load_truth, simulate_annotations
    from labeling.studio.box_annotator_sim import load_box_truth, simulate_box_annotations

    if crowd:
        _crowd_answers(config, truth, crowd=crowd, noise=noise, seed=seed, limit=limit)
        return
    cfg = load(config)
    try:
        studio = connect_studio(cfg, os.environ)
        project = open_studio_project(cfg, studio, create=False)
        if cfg.project.task == "detection":
            boxes = simulate_box_annotations(studio, project, load_box_truth(truth),
                                             fault_rate=noise, skip=skip, keep_rate=keep_shown,
                                             limit=limit, seed=seed)
            out.print(f"answered {boxes.answered} ({boxes.wrong} not right on purpose, "
                      f"{boxes.kept_shown} kept as shown), skipped {boxes.skipped}; pending "
                      f"left {boxes.pending_left}, without an answer in {truth.name}: "
                      f"{boxes.no_truth}")
            return
        answers = load_truth(truth, gone := [])
        _say_missing(truth, gone, len(answers))
        report = simulate_annotations(studio, project, answers, noise=noise, skip=skip,
                                      limit=limit, seed=seed)
    except (StudioError, BoxError) as err:
        fail(str(err))
    out.print(f"answered {report.answered} ({report.wrong} wrong on purpose), skipped "
              f"{report.skipped}; pending left {report.pending_left}, without an answer in "
              f"{truth.name}: {report.no_truth}")


def _say_missing(truth: Path, gone: list[str], found: int) -> None:
    """Files the answer key names that are gone: left out, their tasks left open. All of
    them gone (none ``found``) is an error (a key copied away from its images, say), not
    "answered 0"."""
    if gone and not found:
        fail(f"none of the {len(gone):,} file(s) named in {truth.name} exists (first: "
             f"{gone[0]}); "
             "paths in it are relative to its own folder")
    if gone:
        out.print(f"{len(gone):,} file(s) named in {truth.name} not found (first: {gone[0]}); "
                  "without an answer there, their tasks stay open", markup=False)


def _crowd_answers(config: Path | None, truth: Path, *, crowd: int, noise: float, seed: int,
                   limit: int | None) -> None:
    """``annotate-sim --crowd N``: the simulated crowd of ``pipeline.crowd``."""
    from labeling.studio.annotator_sim import load_truth
    from pipeline.crowd import crowd_work, simulated_accounts

    cfg = load(config)
    if cfg.project.task != "classification":
        fail("--crowd answers one class per image; a detection project's simulated person "
             "answers without it")
    if limit is not None:
        fail("--limit is for one annotator; the crowd answers every open task")
    try:
        answers = load_truth(truth, gone := [])  # by content, as the items are keyed
    except StudioError as err:
        fail(str(err))
    _say_missing(truth, gone, len(answers))
    with opened(config, lock="labelloop annotate-sim") as project:
        studio = connect_studio(cfg, os.environ)
        # As a sync: the crowd answers the project a round made; it makes none.
        project.studio = (studio, open_studio_project(cfg, studio, create=False,
                                                      store=project.store))
        items = project.store.items()
        by_path = {str(Path(i.path).resolve()): answers[i.key] for i in items
                   if i.key in answers}
        names = simulated_accounts(project, crowd)
        report = crowd_work(project, by_path, mean_error=noise, seed=seed, people=names)
    for name in names:
        out.print(f"{name}: answered {report.answered.get(name, 0)} ({report.wrong.get(name, 0)} "
                  f"wrong on purpose), skipped {report.skipped.get(name, 0)}", markup=False)
    out.print(f"the crowd answered {report.total}; the next round (or `labelloop studio "
              "sync`) reads the answers")
    if len(by_path) < len(items):
        out.print(f"{len(items) - len(by_path)} pool item(s) have no answer in {truth.name}: "
                  "their tasks were left open", markup=False)


def print_sync_report(report: SyncReport) -> None:
    """A few lines a person reads after a sync."""
    out.print(f"project {report.project_id}: {report.tasks} tasks, {report.read} read "
              f"(changed since the last sync), {report.annotations} annotations on them")
    out.print(f"labels written {len(report.labeled)}, retracted {len(report.retracted)}, "
              f"skipped {len(report.skipped)}, disagreements {len(report.disagreements)}, "
              f"tasks deleted in Label Studio {len(report.deleted_tasks)}")
    for rejected in report.rejected[:20]:
        out.print(f"rejected annotation {rejected.annotation_id} on task {rejected.task_id} "
                  f"by {rejected.who or '?'}: {rejected.reason}")
    if len(report.rejected) > 20:
        out.print(f"... and {len(report.rejected) - 20} more rejected annotations")
    if report.foreign_tasks:
        out.print(f"{len(report.foreign_tasks)} task(s) carry no item of this label store "
                  f"(imported outside labelloop?); ignored")
