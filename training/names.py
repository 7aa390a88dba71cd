"""The names the model zoo and the tuner accept, without importing torch or Optuna.

Configs are checked against these when they load, and loading a config must stay quick
(``labelloop status`` answers in well under a second; importing torch takes two).
``tests/training/test_names.py`` keeps them equal to the registries in ``training.models``
and ``training.tuning``.
"""

# The detectors of ``training.detection.models``.
DETECTOR_NAMES = ("fasterrcnn_mobilenet_v2", "fcos_mobilenet_v2",
                  "fcos_mobilenet_v2_stride4")
MODEL_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2",
               "mobilenet_v3_small", "resnet18", "small_cnn")
SAMPLER_NAMES = ("grid", "random", "tpe")
# The ones with ImageNet weights (``weights = "imagenet"``): torchvision's, and EfficientNet-Lite's
# (``training.lite``).
PRETRAINED_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                    "mobilenet_v2", "mobilenet_v3_small", "resnet18")


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
