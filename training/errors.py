"""The errors a model's weights raise, without importing torch: the command line catches them
to print one line, and importing torch there would slow every command (see training/names.py).
"""


class WeightsError(ValueError):
    """Weights that cannot be used: a missing, unreadable or unfitting file, or a name the model
    does not have. Never answered with random weights."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for by name but cannot be fetched (offline, server down)."""
