"""``labelloop datasets export``: the small real datasets for demos and benchmarks as files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from labeling.boxes_file import BOXES_FILE, read_boxes_json
from pipeline.datasets import DatasetError, export_dataset, list_datasets, read_labels_csv

datasets_app = typer.Typer(
    help="Small real datasets for demos and benchmarks.", no_args_is_help=True
)


@datasets_app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help=f"Dataset: {', '.join(list_datasets())}.")],
    out_dir: Annotated[Path, typer.Argument(help="New or empty folder to write into.")],
) -> None:
    """Export a dataset as PNG images plus labels.csv (path,label), or for mnist-detection
    boxes.json (boxes per image)."""
    try:
        labels_file = export_dataset(name, out_dir, progress=True)
    except DatasetError as err:
        # markup off: messages hold paths and lists in brackets that rich would swallow.
        Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if labels_file.name == BOXES_FILE:
        Console().print(_boxes_summary(name, labels_file), markup=False, highlight=False,
                        soft_wrap=True)
        return
    count = len(read_labels_csv(labels_file))
    Console().print(f"{count:,} images of {name} in {labels_file.parent}; labels: {labels_file}",
                    markup=False, highlight=False, soft_wrap=True)


def _boxes_summary(name: str, boxes_file: Path) -> str:
    truth = read_boxes_json(boxes_file)
    counts = [len(image.boxes) for image in truth.images.values()]
    return (f"{len(counts):,} images of {name} ({len(truth.split('pool')):,} pool, "
            f"{len(truth.split('test')):,} test) in {boxes_file.parent}; {sum(counts):,} boxes, "
            f"{counts.count(0):,} images without any; boxes: {boxes_file}")
