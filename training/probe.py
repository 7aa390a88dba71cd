"""Probe mode: a frozen backbone's embeddings, computed once per item and cached, and a
logistic-regression head trained on them in seconds (``[training] mode = "probe"``).

With ImageNet weights a linear probe already sorts real photos well from a few labels per class
(stack notes: 1-NN on MobileNetV2 embeddings 90% on 180 photos, against 36% untrained), and a
round that only retrains the head decodes no image twice: every image is embedded once per
backbone, and prediction is one normalisation and one matrix product over the cache.

The model a probe returns is an ordinary ``TrainedModel`` (the pretrained backbone and the new
head): checkpoints, calibration, promotion and prediction from images all work on it as on a
fine-tuned one; ``predict_cached`` is the fast path that skips the images.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.embedding_cache import EmbeddingCache
from training.models import IMAGENET, NormalizedLinear, get_model
from training.params import TrainParams
from training.predict import Predictions, predict, probabilities
from training.train import transform_for
from training.trained import TrainedModel

# (model, paths, keys) -> Predictions with embeddings: how uncached items get embedded.
PredictFiles = Callable[[TrainedModel, list, list], Predictions]

# Images embedded between two writes to the cache (a few MB of vectors each): here, and per
# call to another engine, whose every call pays a start (Ray's driver and actors: seconds).
EMBED_CHUNK = 2048
ENGINE_CHUNK = 16_384
# L-BFGS iterations at most: 52-135 sufficed on the 180 photos (6 to 180 labels), about 240
# on 3,000 synthetic embeddings of 10 classes.
HEAD_STEPS = 500
# The head's inverse penalty (scikit-learn's C). On the photo benchmark's development seeds
# accuracy was flat from 30 to 10,000 (within a point; 1 and 3 underfit), but the stronger
# penalties shrink the logits: at 30 the temperature that fits held-out photos best was 0.4-0.5,
# and the rounds only ever soften (T >= 1, pipeline/round/train.py), so confidences stayed far
# too low for thresholds and pre-annotation cut-offs. At 10,000 it is 0.9-1.25.
HEAD_C = 10_000.0


def backbone_id(params: TrainParams) -> str:
    """What the embeddings depend on: model, weights (a file by its content) and input size.
    Two configs with the same id produce the same vectors for the same image."""
    tconf = transform_for(params)
    if params.weights is None:
        weights = f"random-seed{params.seed}"
    elif Path(params.weights).is_file():
        digest = hashlib.sha256(Path(params.weights).read_bytes()).hexdigest()[:12]
        weights = f"file-{digest}"
    else:
        weights = "IMAGENET1K_V1" if params.weights == IMAGENET else str(params.weights)
    return f"{params.model}-{weights}-{tconf.channels}x{tconf.image_size}".replace("/", "_")


def model_backbone_id(model: TrainedModel) -> str:
    """The backbone id of a trained probe: the one recorded when it was trained. Its weights
    are in its checkpoint; the weights file its params name may hold others by now (replaced
    at the same path), whose id must not file this model's vectors."""
    recorded = model.metrics.get("backbone")
    return recorded if isinstance(recorded, str) and recorded else backbone_id(model.params)


def backbone(params: TrainParams, num_classes: int) -> TrainedModel:
    """The frozen backbone with an untrained head: what embeds images for the cache."""
    module = get_model(params.model, num_classes, weights=params.weights, seed=params.seed)
    return TrainedModel(module=module.eval(), classes=tuple(str(i) for i in range(num_classes)),
                        transform=transform_for(params), params=params)


def embed(model: TrainedModel, paths: Sequence[str | Path], keys: Sequence[str],
          cache: EmbeddingCache, *, progress: bool = False,
          predict_files: PredictFiles | None = None) -> np.ndarray:
    """[N, D] embeddings of ``keys`` (files ``paths``), computing and caching only the ones
    the cache lacks; ``predict_files(model, paths, keys)`` computes them (another engine's,
    e.g. Ray's), by default ``predict`` here."""
    if not keys:  # a pool whose every item has a person's label: nothing to embed
        return np.zeros((0, model.module.embedding_dim), cache.dtype)
    where = dict(zip(keys, paths, strict=True))
    todo = cache.missing(keys)
    # A chunk at a time, each written as it is done: a kill (or a cluster that dies) loses
    # one chunk's work, not the step's (a pool of 20,000 photos takes minutes).
    size = EMBED_CHUNK if predict_files is None else ENGINE_CHUNK
    unwritten: dict[str, np.ndarray] = {}  # vectors the cache could not take
    for start in range(0, len(todo), size):
        part = todo[start:start + size]
        part_paths = [where[k] for k in part]
        out = (predict_files(model, part_paths, part) if predict_files else
               predict(model, part_paths, embeddings=True, progress=progress))
        if not unwritten:
            try:
                cache.add(part, out.embeddings)
                continue
            except OSError as err:
                # The cache spares the next round this work; a full disk must not lose this one.
                warnings.warn(f"embedding cache {cache.folder} not written "
                              f"({err.strerror or err}); these embeddings are computed again "
                              "next time", stacklevel=2)
        unwritten.update(zip(part, out.embeddings, strict=True))
    if unwritten:
        cached = [k for k in keys if k not in unwritten]
        unwritten.update(zip(cached, cache.get(cached), strict=True))
        return np.stack([unwritten[k] for k in keys]).astype(cache.dtype, copy=False)
    return cache.get(list(keys))


def train_probe(paths: Sequence[str | Path], keys: Sequence[str], labels: Sequence[str],
                classes: Sequence[str], params: TrainParams, cache: EmbeddingCache, *,
                progress: bool = False) -> TrainedModel:
    """A logistic-regression head on the cached embeddings of the labeled items; the backbone
    stays as its weights gave it. Raises ValueError for an empty set or a label outside
    ``classes``."""
    classes = tuple(classes)
    if not keys:
        raise ValueError("no labelled images to train on")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    started = time.perf_counter()
    model = backbone(params, len(classes))
    x = torch.from_numpy(embed(model, paths, keys, cache, progress=progress))
    y = torch.tensor([classes.index(label) for label in labels])
    weight, bias = _fit_head(x, y, len(classes))
    with torch.no_grad():
        model.module.head = NormalizedLinear(x.shape[1], len(classes))
        model.module.head.weight.copy_(weight)
        model.module.head.bias.copy_(bias)
    model.classes = classes
    model.metrics = {"n_labels": len(keys), "n_train": len(keys), "mode": "probe",
                     "backbone": backbone_id(params), "weights": model.module.weights_note,
                     "train_loss": _train_loss(model.module.head, x, y),
                     "seconds": round(time.perf_counter() - started, 3)}
    return model


def _fit_head(x: torch.Tensor, y: torch.Tensor, n_classes: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [K, D], bias [K]) of the multinomial logistic regression on the L2-normalised
    embeddings ``x`` that minimises the summed cross-entropy, each class weighted by
    n / (classes present * its count), + ||weight||^2 / (2 * HEAD_C).

    Why this head: on the photo benchmark's development seeds 10-29 (scripts/bench_photos.py,
    test accuracy at 5 / 10 / 20 labels per class) EfficientNet-Lite2 went from 0.788 / 0.868 /
    0.891 with the earlier head (standardised inputs, Adam) to 0.818 / 0.886 / 0.918, and
    MobileNetV2 from 0.796 / 0.847 / 0.863 to 0.802 / 0.853 / 0.873. Per-dimension
    standardisation estimated from a few dozen labels amplifies noise; unit-length embeddings
    and a fixed penalty do not. The problem is convex and L-BFGS in float64 starts from zero:
    the same labels give the same head, whatever the seed. Balanced class weights: labels a
    loop picks are not spread evenly over the classes; at this C they gained 0.6-1.2 points on
    random picks of 30 photos (development seeds; none on stratified picks), and at C = 10
    they were worth 6 (0.75 unweighted, 0.81 weighted, MobileNetV2). They leave the
    probabilities less faithful to the labeled set's class shares; the thresholds are chosen
    and checked on held-out data, so no bound rests on those shares."""
    z = nn.functional.normalize(x.double(), dim=1)
    counts = torch.bincount(y, minlength=n_classes).double()
    class_weight = len(y) / (int((counts > 0).sum()) * counts.clamp_min(1))
    weight = torch.zeros(n_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=HEAD_STEPS, history_size=20,
                                  tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (nn.functional.cross_entropy(z @ weight.T + bias, y, weight=class_weight,
                                            reduction="sum")
                + (weight * weight).sum() / (2 * HEAD_C))
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach().float(), bias.detach().float()


def _train_loss(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(head(x), y))


def predict_cached(model: TrainedModel, paths: Sequence[str | Path], keys: Sequence[str],
                   cache: EmbeddingCache, *, progress: bool = False,
                   predict_files: PredictFiles | None = None) -> Predictions:
    """``predict`` for a probe model through the cache: images are decoded only for keys the
    cache lacks (by ``predict_files``, as in ``embed``). Same probabilities as ``predict`` on
    the images, up to float rounding."""
    feats = embed(model, paths, keys, cache, progress=progress, predict_files=predict_files)
    module = model.module.eval()
    with torch.inference_mode():
        logits = module.head(torch.from_numpy(feats)).float().numpy()
    return Predictions(probs=probabilities(logits, model.temperature), logits=logits,
                       embeddings=feats)
