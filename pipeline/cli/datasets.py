"""``labelloop datasets export``: the small real datasets for demos and benchmarks as files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.datasets import DatasetError, export_dataset, list_datasets, read_labels_csv

datasets_app = typer.Typer(
    help="Small real datasets for demos and benchmarks.", no_args_is_help=True
)


@datasets_app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help=f"Dataset: {', '.join(list_datasets())}.")],
    out_dir: Annotated[Path, typer.Argument(help="New or empty folder to write into.")],
) -> None:
    """Export a dataset as PNG images plus labels.csv (path,label)."""
    try:
        labels_file = export_dataset(name, out_dir, progress=True)
    except DatasetError as err:
        # markup off: messages hold paths and lists in brackets that rich would swallow.
        Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    count = len(read_labels_csv(labels_file))
    Console().print(f"{count:,} images of {name} in {labels_file.parent}; labels: {labels_file}")
