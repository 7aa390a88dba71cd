"""An export with its certificate beside it: what ``labelloop export`` and ``pipeline.api``
hand over.

The certificate (``pipeline.certify``) is written to ``<out>.certificate.json``
(``certificate_path``) after the labels, both atomically; it names the export it belongs to,
so another export that would share the file name is refused rather than left beside a
certificate that is not its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from labeling.store import LabelStore
from labeling.tasks.registry import get_task_type
from pipeline.certify import certificate, drifts_flagged, latest_accept
from pipeline.export import (
    FILE_FORMATS,
    ExportError,
    ExportReport,
    check_format,
    check_kind,
    export_labels,
)
from pipeline.files import write_text_atomic
from pipeline.project.config import Config

# Exports tried while the labels keep changing under them.
ATTEMPTS = 3


@dataclass(frozen=True)
class Delivery:
    """An export and its certificate: the report of what was written, the certificate as
    written (JSON-ready) and where it went."""

    report: ExportReport
    certificate: dict
    certificate_file: Path


def deliver(store: LabelStore, config: Config, out: str | Path, *, format: str,
            human_only: bool = False, force: bool = False) -> Delivery:
    """Export the project's labels to ``out`` as ``format`` (``pipeline.export``) and write
    their certificate beside them. Raises ``ExportError`` where the export is refused (the
    certificate's file exists without ``force``, or belongs to another export still there)
    and ``OSError`` where writing fails."""
    task = config.project.task
    check_format(format, get_task_type(task))  # before the certificate's file is looked at
    where = Path(out).expanduser().absolute()
    check_kind(where, format)  # then a file for a folder, or back
    sidecar = certificate_path(where, format)
    other = _certified_export(sidecar)
    target = Path(out).expanduser().resolve()
    if other is not None and other.resolve() != target and os.path.lexists(other):
        # `data.csv` and the folder `data` share `data.certificate.json`: --force on one
        # would leave the other beside a certificate that is not its own. Said before
        # "pass --force", which would only lead here.
        raise ExportError(f"{sidecar} is the certificate of {other}, which is still there; "
                          "choose another --out")
    if sidecar.exists() and not force:
        # Another export's (labels.csv and labels.coco share one), or a file of the user's.
        raise ExportError(f"{sidecar}, where this export's certificate goes, exists; pass "
                          "--force (from Python: force=True) to replace it, or choose another "
                          "--out")
    for _ in range(ATTEMPTS):
        # The certificate counts the labels as the rows were read (one statement: a round
        # writing labels meanwhile gave 54 machine rows beside a certificate counting 412, a
        # user's review); what else it reads (the accept record, people's answers) is
        # checked unchanged around both, else the export is written again (ours to replace).
        before = store.fingerprint()
        report = export_labels(store, out, format=format, classes=config.project.classes,
                               human_only=human_only, force=force, task=get_task_type(task))
        rounds = store.rounds()
        cert = certificate(store, latest_accept(rounds),
                           reference_error=config.loop.people_error,
                           confidence=config.loop.confidence_level, human_only=human_only,
                           boxes=task == "detection", drifts=drifts_flagged(rounds),
                           counts=report.counts)
        if store.fingerprint() == before:
            break
        force = True
    else:
        # An earlier certificate there describes an earlier file: gone with it.
        if _certified_export(sidecar) is not None:
            sidecar.unlink(missing_ok=True)
        raise ExportError(f"a round's record or people's answers changed while the labels were "
                          f"exported, {ATTEMPTS} times: {out} holds the last try, without a "
                          "certificate; export again once the round or sync is done")
    cert = {**cert, "export": str(target), "exported_rows": report.rows,
            **exported_bound(cert, report.rows), **_unfinished(rounds)}
    write_text_atomic(sidecar, json.dumps(cert, indent=2) + "\n")
    return Delivery(report, cert, sidecar)


def _unfinished(rounds: list[dict]) -> dict:
    """The newest round, if it has not finished (running, or stopped part-way): its accept
    step may still change the machine labels, and its drift test, which comes last, may
    count some of them wrong."""
    last = rounds[-1] if rounds else None
    return {"unfinished_round": last["id"]} if last and last["status"] == "running" else {}


def _certified_export(sidecar: Path) -> Path | None:
    """The export a certificate file names (None: not one, or from before it named it)."""
    try:
        named = json.loads(sidecar.read_text(encoding="utf-8")).get("export")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(named) if isinstance(named, str) else None


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
