"""``labelloop ingest``: add a folder's images to the pool and show what was quarantined."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from labeling.store import LabelStore, StoreError
from labeling.studio import server
from pipeline.cli.common import CONFIG_HELP
from pipeline.ingest import DEFAULT_MAX_PIXELS, IngestError, IngestReport, Rejected, ingest_folder
from pipeline.project.config import ConfigError
from pipeline.project.databases import DatabaseError, password_problem
from pipeline.project.pixels import ingest_keeper
from pipeline.project.workspace import ensure_workspace, find_config


def ingest_command(
    folder: Annotated[
        str | None,
        typer.Argument(help="Folder of images, searched recursively, or an S3 prefix "
                       "s3://bucket/prefix (default: the project's)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help=CONFIG_HELP),
    ] = None,
    # Text, not a Path: a Path folds a database URL's '//' (postgresql://u@h/db became a
    # folder name, and the password check below never saw a URL).
    store: Annotated[
        str | None,
        typer.Option("--store", help="A label store file (or a database URL, without its "
                     "password) to use instead of a project's."),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(help="Larger images are quarantined as possible decompression bombs "
                          "(for a project, at most the default: its rounds read and "
                          "ingest images at the default, and a lower limit holds for this "
                          "ingest only).")
    ] = DEFAULT_MAX_PIXELS,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Labels you already have: a path,label CSV (paths "
                     "relative to it, inside the image folder)."),
    ] = None,
    reread: Annotated[
        bool, typer.Option("--reread", help="Read every file, also those unchanged since an "
                           "earlier ingest read them.")
    ] = False,
    imagefolder: Annotated[
        Path | None,
        typer.Option("--imagefolder", help="Labeled images as DIR/<class>/<image>: they join "
                     "the pool with their folder's class."),
    ] = None,
) -> None:
    """Add images to the pool; unreadable files are quarantined with a reason. With --labels or
    --imagefolder, labels you already have come too (source import, who import:<name>)."""
    err_console = Console(stderr=True)
    imported = None
    if folder is not None and not folder.startswith("s3://"):
        folder = Path(folder)
    try:
        if labels is not None and imagefolder is not None:
            raise IngestError("give --labels or --imagefolder, not both")
        if store is not None:
            if folder is None:
                raise IngestError("with --store, name the FOLDER to ingest")
            if labels is not None or imagefolder is not None:
                raise IngestError("--labels and --imagefolder need a project (its classes): "
                                  "use --config, not --store")
            url = store
            if password_problem(url, "store"):  # a password on a command line is seen by all
                raise IngestError("--store holds a password; use --config with [store] url "
                                  "and the password in [store] password_file or "
                                  "LABELLOOP_STORE_PASSWORD")
        else:
            if max_pixels > DEFAULT_MAX_PIXELS:
                # Training, prediction and Label Studio's images read at the default limit:
                # images admitted above it stopped every round after (a user's review).
                raise IngestError(
                    f"--max-pixels {max_pixels:,} is above the {DEFAULT_MAX_PIXELS:,} pixels "
                    "a project's rounds read images at, so they would fail on the images it "
                    "lets in: downscale those images, or ingest them into a plain store "
                    "(--store) for other tools")
            project = find_config(config)
            if project.project.task != "classification" and (labels is not None
                                                             or imagefolder is not None):
                raise IngestError(f"--labels and --imagefolder bring one class per image; a "
                                  f"{project.project.task} project's labels come from Label "
                                  "Studio (ingest the images alone)")
            _check_inside(project, imagefolder or folder)
            ensure_workspace(project)
            url = project.database_urls(os.environ).store
            folder = folder or project.images_location
        label_store = LabelStore(url)
        try:
            if labels is not None or imagefolder is not None:
                if isinstance(folder, str) and labels is not None:
                    raise IngestError("--labels with images in S3 is not supported yet: "
                                      "ingest the prefix alone")
                imported = _import(label_store, project, labels, imagefolder or folder,
                                   use_folder=imagefolder is not None, max_pixels=max_pixels)
                report = imported.ingest
            else:
                # --store alone names no model: nothing to keep pixels for.
                keep = None if store is not None else ingest_keeper(
                    project, project.training.params(root=project.root))
                report = ingest_folder(label_store, folder, max_pixels=max_pixels,
                                       progress=True, reread=reread, keep_pixels=keep)
        finally:
            label_store.close()
    except (IngestError, StoreError, ConfigError, DatabaseError) as err:
        # markup off: messages hold paths that may contain brackets.
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    print_report(report, Console())
    if imported is not None:
        print_import(imported, Console())
    if store is None and report.added:
        # The pool has work now; the next command depends on where Label Studio is.
        embedded = not (project.studio.url or os.environ.get("LABEL_STUDIO_URL"))
        stopped = embedded and server.status(project.studio_dir).state != "running"
        where = ("`labelloop studio start` (the embedded Label Studio), then `labelloop round`"
                 if stopped else "`labelloop round`")
        err_console.print(f"next: {where}", markup=False, highlight=False, soft_wrap=True)


def _check_inside(project, folder: Path | str | None) -> None:
    """A folder given to a project's ingest must lie in its image folder: Label Studio shows
    people only files from there, so an item from elsewhere could never be sent to them (the
    round's push would hold it back every time)."""
    if folder is None:
        return  # the project's own location
    if isinstance(folder, str) != project.images_remote:
        where = (f"in S3 ({project.project.images})" if project.images_remote
                 else f"the folder {project.images_dir}")
        raise IngestError(f"{folder}: this project's images are {where}, and Label Studio "
                          f"is shown only those; ingest from there (or set [project] images); "
                          f"nothing was ingested")
    if isinstance(folder, str):
        return  # S3 objects are shown through signed URLs, from any prefix
    images = project.images_dir.resolve()
    given = Path(folder).expanduser().resolve()
    if not given.exists():  # before "outside": a typo should not read as a wrong place
        raise IngestError(f"folder not found: {given}; nothing was ingested")
    if given != images and images not in given.parents:
        raise IngestError(
            f"{given} is outside the project's image folder {images}: Label Studio shows "
            f"annotators only images from there. Copy or move it into the image folder (e.g. "
            f"{images / given.name}) and ingest that; nothing was ingested")


def print_report(report: IngestReport, console: Console) -> None:
    """A summary table, then the quarantined files and unreadable folders with their reasons."""
    # Text(...) everywhere a path is shown: rich would read brackets in a path as markup.
    summary = Table(title=Text(f"ingest {report.root}"), show_header=False)
    for what, count in [
        ("added", len(report.added)),
        ("already in the store", len(report.already_present)),
        ("  of these, not read (unchanged since read)", report.unread),
        ("  of these, moved or renamed (path updated)", len(report.moved)),
        ("overwritten with another image (old item has no file)", len(report.replaced)),
        ("duplicates in this folder", len(report.duplicates)),
        ("quarantined", len(report.quarantined)),
        ("left quarantine (fixed or deleted)", len(report.released)),
        ("ignored (not an image extension)", len(report.ignored)),
        ("unreadable folders", len(report.unreadable_dirs)),
        ("links to folders (not followed)", len(report.folder_links)),
        ("links to image files here (read as the file)", len(report.file_links)),
        ("hidden folders (name starts with a dot; not walked)", len(report.hidden_folders)),
    ]:
        summary.add_row(what, f"{count:,}")
    console.print(summary)
    if report.pixels_not_kept:
        console.print(Text(f"pixels not kept: {report.pixels_not_kept}"))
    links = [Rejected(p, "not walked: its images were not read") for p in report.folder_links]
    shown = [Rejected(p, "moved or renamed after it was sent to Label Studio, whose task shows "
                         "the old name: the item keeps it; move the file back")
             for p in report.not_moved]
    overwritten = [Rejected(p, "the file now holds another image, and the image its labels "
                               "were given for is nowhere in the folder: those labels stay in "
                               "the store with no file (export leaves them out); put the image "
                               "back to keep them") for p in report.replaced]
    for title, rows in [("quarantined", report.quarantined),
                        ("moved, not followed", shown),
                        ("overwritten in place", overwritten),
                        ("unreadable folders", report.unreadable_dirs),
                        ("links to folders, not followed", links)]:
        if rows:
            table = Table(title=Text(f"{title} (paths under {report.root})"))
            # fold, not crop: a path cut short with an ellipsis cannot be found.
            table.add_column("path", overflow="fold")
            table.add_column("reason", overflow="fold")
            for path, reason in rows:
                shown = Path(path).relative_to(report.root) if Path(path).is_relative_to(
                    report.root) else path
                table.add_row(Text(str(shown)), Text(reason))
            console.print(table)


def _import(store, project, csv_path, folder, *, use_folder: bool, max_pixels: int):
    from labeling.tasks.registry import get_task_type
    from pipeline.import_labels import import_csv, import_imagefolder

    task, classes = get_task_type(project.project.task), project.project.classes
    if use_folder:
        return import_imagefolder(store, folder, task, classes, max_pixels=max_pixels)
    return import_csv(store, csv_path, folder, task, classes, max_pixels=max_pixels)


def print_import(report, console: Console) -> None:
    """How many labels came in, and every refused row with its reason."""
    summary = Table(title="labels imported (source import)", show_header=False)
    for what, count in [("added", report.added), ("already there", report.unchanged),
                        ("kept a person's different label", len(report.kept_people)),
                        ("refused", len(report.refused))]:
        summary.add_row(what, f"{count:,}")
    console.print(summary)
    if report.refused:
        table = Table(title="refused rows")
        table.add_column("path", overflow="fold")
        table.add_column("reason", overflow="fold")
        for path, reason in report.refused:
            table.add_row(Text(path), Text(reason))
        console.print(table)
