"""Where a project keeps its items' decoded pixels (``training.pixels``), and the keeper that
ingest fills as it reads new images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.project.config import Config
from training.params import TrainParams

if TYPE_CHECKING:  # torch comes with them
    from training.pixels import PixelKeeper


def pixels_dir(config: Config) -> Path:
    return config.workspace_dir / "pixels"


def ingest_keeper(config: Config, params: TrainParams) -> PixelKeeper | None:
    """The keeper of ``params``' model input pixels, for ingest; None where the predict step
    reads no pixels: a detection project (images at their own size), probe mode (cached
    embeddings instead), inputs over ``training.pixels.MAX_ITEM_BYTES``."""
    if config.project.task != "classification" or params.mode == "probe":
        return None
    from training.pixels import pixel_keeper
    from training.train import transform_for

    return pixel_keeper(pixels_dir(config), transform_for(params))
