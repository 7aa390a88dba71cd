"""The errors a model's weights raise, without importing torch: the command line catches them
to print one line, and importing torch there would slow every command (see training/names.py).
"""


class WeightsError(ValueError):
    """Weights that cannot be used: a missing, unreadable or unfitting file, or a name the model
    does not have. Never answered with random weights."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for by name but cannot be fetched (offline, server down)."""


def looks_like_weights_name(text: str) -> bool:
    """"IMAGENET1K_V1" or "ResNet18_Weights.IMAGENET1K_V1": an upper-case identifier, after a
    torchvision weights enum's name if any. Anything else (a slash, "BEST.PTH") is a file."""
    *prefix, member = text.split(".")
    return (
        len(prefix) <= 1
        and all(p.isidentifier() and p.endswith("_Weights") for p in prefix)
        and member.isidentifier()
        and member.isupper()
    )
