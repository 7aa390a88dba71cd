"""``labelloop quickstart``: the command line of ``pipeline.quickstart``, which is imported only
when the command runs (it loads torch, the Label Studio SDK and MNIST)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from labeling.boxes import BoxError
from labeling.studio.errors import StudioError
from pipeline.datasets import DatasetError
from pipeline.project.config import ConfigError
from pipeline.project.lock import LockHeld
from pipeline.registry.registry import RegistryError


def quickstart_command(
    folder: Path = typer.Option(Path("demo"), help="Where the demo project lives."),
    rounds: int | None = typer.Option(
        None, min=1, help="Rounds to run now (default 10, boxes 8; a re-run continues). Stops "
        "early once every image is labeled."),
    noise: float = typer.Option(0.0, min=0.0, max=1.0, help="Simulated annotator's error rate."),
    seed: int = typer.Option(0, help="Seeds the simulated annotator."),
    annotators: int | None = typer.Option(
        None, min=0, max=50, help="Annotator accounts in the simulated crowd (default: the "
        "demo's \\[studio] annotators; 0 = one annotator). --noise is their mean error."),
    dataset: str = typer.Option("mnist", help="mnist, or photos: 180 real photos in 6 classes "
                                "with ImageNet's MobileNetV2 as a frozen backbone."),
    task: str = typer.Option("classification", help="classification, or detection: MNIST "
                             "digits on canvases, boxes drawn by a simulated person (--noise: "
                             "faults per box)."),
) -> None:
    """MNIST (or real photos, or digits to box) through the whole loop with a simulated
    annotator in an embedded Label Studio."""
    try:
        if task == "detection":
            from pipeline.quickstart_boxes import run_detection_quickstart

            run_detection_quickstart(folder, rounds=rounds or 8, noise=noise, seed=seed,
                                     env=dict(os.environ))
            return
        if task != "classification":
            print(f"error: --task {task!r}; valid: classification, detection", file=sys.stderr)
            raise typer.Exit(2)
        from pipeline.quickstart import run_quickstart

        # Ten: with a quarter of the held-out answers choosing models, the first machine
        # labels come a round or two later than the eight rounds that once sufficed.
        run_quickstart(folder, rounds=rounds or 10, noise=noise, seed=seed,
                       env=dict(os.environ),
                       annotators=annotators, dataset=dataset)
    except (StudioError, RegistryError, ConfigError, DatasetError, BoxError, LockHeld) as err:
        print(f"error: {err}; running it again continues where it stopped", file=sys.stderr)
        raise typer.Exit(2) from None
