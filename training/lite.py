"""EfficientNet-Lite0/1/2 backbones, whose ImageNet weights install offline (as MobileNetV2's
do) and embed real photos better than MobileNetV2 from 10 labels per class on (docs/benchmarks.md,
real photos). The architecture is the ``efficientnet-lite-pytorch`` package's: the weights files
were converted from TensorFlow for exactly that code, with TensorFlow's "same" padding, which
a re-implementation here would have to match layer by layer.

Lite models take inputs scaled as TensorFlow's Lite builder did: (pixel - 127) / 128.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a model is built: the set-up reads the file names
    from torch import nn

# variant -> (default image size, the weights file torch's hub cache holds)
VARIANTS = {
    "efficientnet_lite0": (224, "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": (240, "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": (260, "efficientnet-lite2-9656183e.pth"),
}
MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3
HEAD_KEY = "_fc"  # the classifier layer in the weights files, which becomes our head


def lite_backbone(name: str) -> tuple[nn.Module, int]:
    """(the network with its classifier replaced by an identity, so that its output is the
    pooled [N, 1280] embedding; the classifier's input width)."""
    from efficientnet_lite_pytorch import EfficientNet
    from torch import nn

    # image_size=None: TensorFlow's "same" padding worked out for each input's size. A size
    # fixed here would pad wrongly at any other ``[training] image_size`` (logits off by 1-3
    # at 224 px for Lite2, measured); at the default size the two are identical.
    net = EfficientNet.from_name(name.replace("_", "-"), image_size=None)
    width = net._fc.in_features
    net._fc = nn.Identity()
    return net, width
