"""``labelloop export``: the labeled dataset with provenance, as a CSV or an image folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import typer
from rich.console import Console

from labeling.store import LabelStore, StoreError
from labeling.tasks.registry import get_task_type
from pipeline.certify import describe
from pipeline.cli.common import CONFIG_HELP, fail
from pipeline.delivery import deliver
from pipeline.export import EXPORT_FORMATS, ExportError
from pipeline.project.config import ConfigError
from pipeline.project.databases import DatabaseError
from pipeline.project.workspace import find_config

# soft_wrap: one line per message also when stderr is not a terminal (rich wraps at 80 there).
console = Console(stderr=True, soft_wrap=True)
BOX_FORMATS = get_task_type("detection").export_formats


def export_command(
    fmt: str = typer.Option(..., "--format", help=f"Classes: {', '.join(EXPORT_FORMATS)}; "
                            f"boxes (a detection project): {', '.join(BOX_FORMATS)}."),
    out: Path = typer.Option(..., "--out", help="The CSV file, the image folder, or the COCO "
                             "JSON or YOLO folder to write. An image folder's files are hard "
                             "links to the pool's where the file system allows (no space "
                             "taken): editing one edits the pool's image; copy it first."),
    human_only: bool = typer.Option(False, "--human-only",
                                    help="Only labels from people: answers in Label "
                                         "Studio, seed labels and imported labels (the "
                                         "source column tells them apart); no machine "
                                         "labels."),
    force: bool = typer.Option(False, "--force",
                               help="Replace a previous export (a file or folder labelloop "
                                    "wrote), and the certificate beside it."),
    config: Path | None = typer.Option(None, "--config", "-c",
                                       help=CONFIG_HELP),
) -> None:
    """Export labeled items with their provenance (source, who, model version, confidence).

    Skipped, disputed, quarantined, missing and changed files are left out and counted.
    """
    try:
        cfg = find_config(config)
        store = LabelStore(cfg.database_urls(os.environ).store)
    except (ConfigError, StoreError, DatabaseError) as err:
        fail(str(err))
    try:
        done = deliver(store, cfg, out, format=fmt, human_only=human_only, force=force)
    except ExportError as err:
        fail(str(err))
    except OSError as err:
        fail(f"writing {out} failed: {why_not_written(err, out)}", code=1)
    finally:
        store.close()
    report, cert = done.report, done.certificate
    sources = ", ".join(f"{n} {s}" for s, n in report.by_source.items()) or "none"
    _say(f"exported {report.rows} labeled item(s) ({sources}) to {report.out}")
    _say(f"certificate ({done.certificate_file}): {describe(cert)}")
    if "unfinished_round" in cert:
        _say(f"warning: round {cert['unfinished_round']} has not finished (it is running, or "
             "stopped part-way): its accept step may still change the machine labels, and its "
             "drift test, its last step, may count some of them wrong; export again once it "
             "has finished (`labelloop round` resumes a stopped one)")
    if "exported_wrong_ub" in cert:
        _say(f"of the {report.rows:,} exported rows (fewer than the labels delivered), "
             f"wrong labels <= {100 * cert['exported_wrong_ub']:.2f}%")
    if report.left_out:
        reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in report.left_out.items())
        _say(f"left out: {reasons}")
    for what, paths in (("missing file", report.missing),
                        ("changed file (other bytes than its item's)", report.changed)):
        for path in paths[:10]:
            _say(f"  {what}: {path}")
        if len(paths) > 10:
            _say(f"  ... and {len(paths) - 10} more")


def why_not_written(err: OSError, out: Path) -> str:
    """An OSError of writing ``out`` in the user's terms: a file where a folder must be, and the
    folder rather than the temporary file beside ``out`` that the export writes first."""
    where = Path(err.filename) if err.filename else None
    if where is not None and err.errno == errno.EEXIST and where.is_file():
        return f"{where} is a file, not a folder"
    if where is not None and where.name.startswith(f".{Path(out).name}."):
        where = where.parent
    return f"{err.strerror or err} ({where})" if where is not None else str(err)


def _say(text: str) -> None:
    # Plain text: paths, class names and [loop] keys that rich would read as markup.
    console.print(text, highlight=False, markup=False)
