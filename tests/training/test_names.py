"""The quick name lists that configs are checked against match the real registries."""

from training.models import list_models
from training.names import MODEL_NAMES, SAMPLER_NAMES
from training.tuning import list_samplers


def test_the_name_lists_are_the_registries():
    assert sorted(MODEL_NAMES) == sorted(list_models())
    assert sorted(SAMPLER_NAMES) == sorted(list_samplers())
