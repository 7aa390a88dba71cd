"""Detectors by name. Each is a torchvision detector on the first blocks of MobileNetV2.

MobileNetV2's full stride-32 features are too coarse for 12-px objects on 128-px images, so the
backbone stops at stride 16 (``features[:14]``) and a small FPN merges its maps from stride 4
or 8 to 16; the images are kept at their own size rather than scaled up to torchvision's
800 px (which alone makes CPU training about 40 times slower), up to ``MAX_SIDE`` px a side
(larger ones are scaled down to it, inside the model).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from training.models import IMAGENET, IMAGENET_MEAN, IMAGENET_STD, get_model

# Channels of MobileNetV2's feature maps at stride 4 (end of block 3), 8 (end of block 6) and
# 16 (end of block 13).
_C2, _C3, _C4 = 24, 32, 96
_FPN_CHANNELS = 64


class FeatureLevels(nn.Module):
    """MobileNetV2 blocks 0-13 with an FPN over their maps from stride ``finest`` (4 or 8) to
    16; ``forward`` returns the first ``levels`` FPN maps (finest first), as torchvision
    detectors expect."""

    def __init__(self, features: nn.Sequential, levels: int, *, finest: int = 8) -> None:
        super().__init__()
        if finest not in (4, 8):
            raise ValueError(f"finest must be 4 or 8, got {finest}")
        # The names stay those of the stride-8 detectors' checkpoints, which must still load.
        self.stride4 = features[:4] if finest == 4 else None
        self.stride8 = features[4:7] if finest == 4 else features[:7]
        self.stride16 = features[7:14]
        self.fpn = FeaturePyramidNetwork(([_C2] if finest == 4 else []) + [_C3, _C4],
                                         _FPN_CHANNELS)
        self.levels = levels
        self.out_channels = _FPN_CHANNELS  # read by torchvision's detectors

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        maps = []
        if self.stride4 is not None:
            x = self.stride4(x)
            maps.append(x)
        x = self.stride8(x)
        maps += [x, self.stride16(x)]
        out = self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
        return OrderedDict(list(out.items())[: self.levels])


@dataclass(frozen=True)
class _Entry:
    build: Callable[[int, nn.Sequential, int | None], nn.Module]
    # Class index 0 of the detector's labels: 1 where torchvision reserves 0 for background.
    first_label: int
    set_score_floor: Callable[[nn.Module, float], None]
    # True for one training step's losses that show the detector cannot learn; None when
    # they say nothing either way.
    stalled: Callable[[Mapping[str, float]], bool | None] | None = None


_REGISTRY: dict[str, _Entry] = {}


def register_detector(
    name: str,
    build: Callable[[int, nn.Sequential, int | None], nn.Module],
    *,
    first_label: int,
    set_score_floor: Callable[[nn.Module, float], None],
    stalled: Callable[[Mapping[str, float]], bool | None] | None = None,
) -> None:
    """Make ``build(num_classes, mobilenet_features, image_size) -> detector`` available as
    ``name``. ``first_label`` is the detector's label for the first class (1 when 0 means
    background); ``set_score_floor(detector, floor)`` sets the score below which it drops boxes;
    ``stalled(losses)``, if given, says from one training step's losses (name -> value) whether
    the detector cannot learn (None: cannot tell), so that a run that ends so is restarted
    slower. Raises ``ValueError`` if ``name`` is taken."""
    if name in _REGISTRY:
        raise ValueError(f"a detector named {name!r} is already registered")
    _REGISTRY[name] = _Entry(build, first_label, set_score_floor, stalled)


def list_detectors() -> list[str]:
    """The names ``get_detector`` accepts, sorted."""
    return sorted(_REGISTRY)


def detector_entry(name: str) -> _Entry:
    """The registry entry of ``name``; raises ``ValueError`` listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; valid detectors: {', '.join(list_detectors())}"
        ) from None


def get_detector(
    name: str,
    num_classes: int,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    allow_download: bool = True,
    seed: int | None = None,
) -> nn.Module:
    """Build detector ``name`` for ``num_classes`` classes.

    ``weights="imagenet"`` starts the backbone from torchvision's ImageNet MobileNetV2 weights,
    read from torch's hub cache through ``training.models.get_model`` (a missing or corrupt
    file raises its ``WeightsUnavailableError``, never falls back to random weights); None is
    random init, from ``seed`` if given (torch's global generator is left as it was). The
    detector's ``weights_note`` says which. ``image_size`` as in ``DetectParams``.
    """
    entry = detector_entry(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if weights not in (IMAGENET, None):
        raise ValueError(f"weights must be {IMAGENET!r} or None, got {weights!r}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        classifier = get_model("mobilenet_v2", 1000, weights=weights,
                               allow_download=allow_download)
        detector = entry.build(num_classes, classifier.features.features, image_size)
    detector.weights_note = f"backbone {classifier.weights_note}"
    # channels_last: about a third less CPU time per training step with oneDNN (measured on
    # 2 cores); load_state_dict keeps the layout, so a loaded detector computes the same.
    return detector.to(memory_format=torch.channels_last)


# With ``image_size`` None, an image whose longer side exceeds this is scaled down to it: a
# batch is padded to its largest height and width, and a 2000 x 20 image beside a 16 x 3000 one
# made a 3000 x 2000 batch that took 22 GB and the machine's memory (the process killed).
MAX_SIDE = 1024


class _KeepSize(GeneralizedRCNNTransform):
    """torchvision's detector transform (normalise, batch) without its resize step, which would
    scale a 128-px image up to ``min_size``; an image larger than ``max_size`` on its longer
    side is scaled down to it (boxes with it; predictions are mapped back by ``postprocess``)."""

    def resize(self, image, target=None):
        height, width = image.shape[-2:]
        scale = self.max_size / max(height, width)
        if scale >= 1:
            return image, target
        image = torch.nn.functional.interpolate(
            image[None], size=(max(1, round(height * scale)), max(1, round(width * scale))),
            mode="bilinear", align_corners=False)[0]
        if target is not None and "boxes" in target:
            target["boxes"] = resize_boxes(target["boxes"], (height, width),
                                           tuple(image.shape[-2:]))
        return image, target


def _transform(image_size: int | None) -> GeneralizedRCNNTransform:
    # Stride 16 is the coarsest map, so padding a batch to a multiple of 16 suffices.
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    if image_size is None:
        return _KeepSize(32, MAX_SIDE, mean, std, size_divisible=16)
    return GeneralizedRCNNTransform(image_size, 2 * image_size, mean, std, size_divisible=16)


BOX_BIAS = 1.0  # the FCOS box head's starting output, in anchor sizes per side (_fcos)


def _fcos(
    num_classes: int, features: nn.Sequential, image_size: int | None, *, levels: int,
    head_convs: int, finest: int = 8,
) -> nn.Module:
    backbone = FeatureLevels(features, levels, finest=finest)
    # One anchor per location, as large as its level's stride: FCOS's centre-sampling radius is
    # 1.5 anchor sizes, so the size must follow the grid, never be set beside it.
    sizes = tuple((finest * 2**i,) for i in range(levels))
    anchors = AnchorGenerator(sizes, ((1.0,),) * levels)
    head = FCOSHead(_FPN_CHANNELS, 1, num_classes, num_convs=head_convs)
    # The box head ends in a ReLU, and torchvision starts its bias at 0: half the outputs are
    # 0 from the first step, many boxes have zero size and get no gradient, and on some
    # training sets the head never came back (mAP@0.5 0.000 after 300 steps at lr 0.005, 0.0025
    # and 0.00125). Starting every side at one anchor size (boxes 16 px at stride 8, the
    # digits' scale; 8 px at stride 4) keeps the ReLU open: those sets then learned (docs/
    # benchmarks.md, the detection loop).
    nn.init.constant_(head.regression_head.bbox_reg.bias, BOX_BIAS)
    model = FCOS(backbone, num_classes, anchor_generator=anchors, head=head,
                 score_thresh=0.05, detections_per_img=100, topk_candidates=300)
    model.transform = _transform(image_size)
    return model


def _fcos_floor(model: nn.Module, floor: float) -> None:
    model.score_thresh = floor


def _fcos_stalled(losses: Mapping[str, float]) -> bool | None:
    # FCOS's box head ends in a ReLU. A step too large can push its outputs below zero
    # everywhere: every box then has zero size, the GIoU loss is exactly 1 and no gradient
    # gets through the ReLU again. Seen on a loop's 99 images at lr 0.005 (mAP@0.5 0.000);
    # the same images learn at 0.002 (0.982). A batch without objects has no box loss (0).
    box = losses.get("bbox_regression", 0.0)
    return None if box == 0.0 else abs(box - 1.0) < 1e-6


def _faster_rcnn(num_classes: int, features: nn.Sequential, image_size: int | None) -> nn.Module:
    backbone = FeatureLevels(features, 1)
    # Aspect ratios are height / width: digits stand taller than wide ("1" very much so).
    anchors = AnchorGenerator(((12, 24, 48),), ((1.0, 2.0, 4.0),))
    model = FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(_FPN_CHANNELS * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes + 1),  # + background
        # torchvision's proposal counts are for 800-px photos with dozens of objects.
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128,
    )
    model.transform = _transform(image_size)
    return model


def _faster_rcnn_floor(model: nn.Module, floor: float) -> None:
    model.roi_heads.score_thresh = floor


# FCOS on one FPN map, each location matched to the objects whose centre is within 1.5 anchor
# sizes (centre sampling; the anchor is the stride's size, ``_fcos``) and that hold the
# location strictly inside. A second, coarser level
# scored the same on 12-56 px digits (0.849 vs 0.858 mAP@0.5, 200 images) and would take no
# objects: FCOS gives a level objects 4-8x its size.
register_detector(
    "fcos_mobilenet_v2",
    functools.partial(_fcos, levels=1, head_convs=2),
    first_label=0,
    set_score_floor=_fcos_floor,
    stalled=_fcos_stalled,
)
# The same at stride 4, the default since 2026-12-05. On the stride-8 grid an object narrower
# than 8 px may hold no location at all: it is never a positive in training and can never be
# found (small "1"s: 52 of the 5,291 mnist-detection boxes, in 2% of its images, all of them
# wrong with no doubt in their scores, so they spoil the surest images that the accept step
# relies on; 9 boxes at stride 4). Trained on random 400-image sets of that pool (seeds 0 / 1 /
# 2, 300 test canvases), test images with every box right rose from 0.70 / 0.67 / 0.68 to
# 0.79 / 0.79 / 0.81 and mAP@0.5 from 0.869 / 0.854 / 0.879 to 0.908 / 0.905 / 0.906 (on 100
# images, seed 0: 0.57 to 0.64, 0.771 to 0.821); training took about a quarter longer.
register_detector(
    "fcos_mobilenet_v2_stride4",
    functools.partial(_fcos, levels=1, head_convs=2, finest=4),
    first_label=0,
    set_score_floor=_fcos_floor,
    stalled=_fcos_stalled,
)
register_detector(
    "fasterrcnn_mobilenet_v2", _faster_rcnn, first_label=1, set_score_floor=_faster_rcnn_floor
)
