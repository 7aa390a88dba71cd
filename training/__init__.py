"""Train, calibrate, save and run image classifiers for labelloop.

Knows tensors and image files only: never imports ``labeling`` or ``pipeline``.
"""

from training.calibrate import calibrate, calibrate_arrays, fit_temperature
from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.data import (
    ArrayDataset,
    ImageFileDataset,
    TransformConfig,
    augment,
    load_arrays,
    normalize,
)
from training.evaluate import EvalReport, evaluate, expected_calibration_error
from training.images import IMAGE_EXTENSIONS, ImageError, open_image
from training.models import (
    FeatureClassifier,
    ModelSpec,
    WeightsUnavailableError,
    get_model,
    list_models,
    model_spec,
    register_model,
)
from training.params import TrainParams
from training.predict import Predictions, predict, predict_arrays
from training.train import train, train_arrays
from training.trained import TrainedModel

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "CheckpointError",
    "EvalReport",
    "FeatureClassifier",
    "ImageError",
    "ImageFileDataset",
    "ModelSpec",
    "Predictions",
    "TrainParams",
    "TrainedModel",
    "TransformConfig",
    "WeightsUnavailableError",
    "augment",
    "calibrate",
    "calibrate_arrays",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "get_model",
    "list_models",
    "load_arrays",
    "load_checkpoint",
    "model_spec",
    "normalize",
    "open_image",
    "predict",
    "predict_arrays",
    "register_model",
    "save_checkpoint",
    "train",
    "train_arrays",
]
