"""``labelloop export``: the labeled dataset with provenance, as a CSV or an image folder."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import typer
from rich.console import Console

from labeling.store import LabelStore, StoreError
from labeling.tasks.registry import get_task_type
from pipeline.certify import certificate, describe, latest_accept
from pipeline.cli.common import fail
from pipeline.export import EXPORT_FORMATS, FILE_FORMATS, ExportError, export_labels
from pipeline.files import write_text_atomic
from pipeline.project.config import ConfigError, load_config
from pipeline.project.databases import DatabaseError

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
                               help="Replace an existing CSV or a previous image-folder export, "
                                    "and the certificate beside it."),
    config: Path | None = typer.Option(None, "--config", "-c",
                                       help="labelloop.toml (default: ./labelloop.toml)"),
) -> None:
    """Export labeled items with their provenance (source, who, model version, confidence).

    Skipped, disputed, quarantined, missing and changed files are left out and counted.
    """
    try:
        cfg = load_config(config if config is not None else Path.cwd())
        store = LabelStore(cfg.database_urls(os.environ).store)
    except (ConfigError, StoreError, DatabaseError) as err:
        fail(str(err))
    sidecar = certificate_path(Path(out).expanduser().absolute(), fmt)
    if sidecar.exists() and not force:
        # Another export's (labels.csv and labels.coco share one), or a file of the user's.
        store.close()
        fail(f"{sidecar}, where this export's certificate goes, exists; pass --force to "
             "replace it, or choose another --out")
    other = _certified_export(sidecar)
    target = Path(out).expanduser().resolve()
    if other is not None and other.resolve() != target and os.path.lexists(other):
        # `data.csv` and the folder `data` share `data.certificate.json`: --force on one
        # would leave the other beside a certificate that is not its own.
        store.close()
        fail(f"{sidecar} is the certificate of {other}, which is still there; choose another "
             "--out")
    try:
        report = export_labels(store, out, format=fmt, classes=cfg.project.classes,
                               human_only=human_only, force=force,
                               task=get_task_type(cfg.project.task))
        cert = certificate(store, latest_accept(store.rounds()),
                           reference_error=cfg.loop.reference_error,
                           confidence=cfg.loop.confidence_level, human_only=human_only,
                           boxes=cfg.project.task == "detection")
        cert = {**cert, "export": str(target), "exported_rows": report.rows,
                **exported_bound(cert, report.rows)}
        write_text_atomic(sidecar, json.dumps(cert, indent=2) + "\n")
    except ExportError as err:
        fail(str(err))
    except OSError as err:
        fail(f"writing {out} failed: {why_not_written(err, out)}", code=1)
    finally:
        store.close()
    sources = ", ".join(f"{n} {s}" for s, n in report.by_source.items()) or "none"
    _say(f"exported {report.rows} labeled item(s) ({sources}) to {report.out}")
    _say(f"certificate ({sidecar}): {describe(cert)}")
    if "exported_wrong_ub" in cert:
        _say(f"of the {report.rows:,} exported rows (fewer than the labels delivered), "
             f"wrong labels <= {100 * cert['exported_wrong_ub']:.2f}%")
    if report.left_out:
        reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in report.left_out.items())
        _say(f"left out: {reasons}")
    for path in report.missing[:10]:
        _say(f"  missing file: {path}")
    if len(report.missing) > 10:
        _say(f"  ... and {len(report.missing) - 10} more")


def _certified_export(sidecar: Path) -> Path | None:
    """The export a certificate file names (None: not one, or from before it named it)."""
    try:
        named = json.loads(sidecar.read_text(encoding="utf-8")).get("export")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(named) if isinstance(named, str) else None


def why_not_written(err: OSError, out: Path) -> str:
    """An OSError of writing ``out`` in the user's terms: a file where a folder must be, and the
    folder rather than the temporary file beside ``out`` that the export writes first."""
    where = Path(err.filename) if err.filename else None
    if where is not None and err.errno == errno.EEXIST and where.is_file():
        return f"{where} is a file, not a folder"
    if where is not None and where.name.startswith(f".{Path(out).name}."):
        where = where.parent
    return f"{err.strerror or err} ({where})" if where is not None else str(err)


def exported_bound(cert: dict, rows: int) -> dict:
    """The bound for the rows an export wrote when it left labeled items out (their files
    gone): the bound caps the number of wrong labels, and all of them may be among the rows,
    so the share over fewer rows is the count at the bound over the rows."""
    if cert.get("wrong_ub") is None or not 0 < rows < cert["delivered"]:
        return {}
    return {"exported_wrong_ub": min(1.0, cert["wrong_ub"] * cert["delivered"] / rows)}


def certificate_path(out: Path, fmt: str) -> Path:
    """Where an export's certificate goes: beside it (``labels.csv`` ->
    ``labels.certificate.json``; folder ``data`` -> ``data.certificate.json``, ``data.v2`` ->
    ``data.v2.certificate.json``: a folder's name has no suffix to drop), so an image folder
    holds only classes and its provenance."""
    out = Path(out)
    return out.parent / f"{out.stem if fmt in FILE_FORMATS else out.name}.certificate.json"


def _say(text: str) -> None:
    # Plain text: paths, class names and [loop] keys that rich would read as markup.
    console.print(text, highlight=False, markup=False)
