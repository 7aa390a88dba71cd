"""The quick name lists that configs are checked against match the real registries."""

from training.detection.models import list_detectors
from training.models import _REGISTRY, list_models
from training.names import DETECTOR_NAMES, MODEL_NAMES, PRETRAINED_NAMES, SAMPLER_NAMES
from training.tuning import list_samplers


def test_the_name_lists_are_the_registries():
    assert sorted(MODEL_NAMES) == sorted(list_models())
    assert sorted(SAMPLER_NAMES) == sorted(list_samplers())
    assert sorted(DETECTOR_NAMES) == list_detectors()
    assert sorted(PRETRAINED_NAMES) == sorted(
        name for name, entry in _REGISTRY.items() if entry.torchvision_name or entry.hub_file)
