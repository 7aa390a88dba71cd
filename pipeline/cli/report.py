"""``labelloop report``: the HTML report of a project (``pipeline.report``)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.common import ConfigOption, console, fail, opened
from pipeline.report import ReportError, write_report


def report_command(
    out: Path = typer.Option(Path("report.html"), "--out", "-o",
                             help="The HTML page; its PNGs go to <name>_files/ beside it."),
    config: Path | None = ConfigOption,
) -> None:
    """Write a self-contained HTML report: learning curve, auto-labeling, confidence,
    confusion matrix, corrections, drift, models and promotions."""
    with opened(config, reads=True) as project:
        try:
            page, pngs = write_report(project, out)
        except ReportError as err:
            fail(str(err), code=1)
        except OSError as err:  # a read-only or full folder, a name that is a folder
            fail(f"cannot write the report at {out}: {err.strerror or err}")
    console.print(f"wrote {page} ({len(pngs)} plots also in {pngs[0].parent}/)")
