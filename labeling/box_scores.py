"""From a detector's scored boxes to one image: the machine's label, how sure it is of the whole
image, and how much a person's look at it would teach.

A prediction is ``{"width", "height", "boxes": [{"label", "x", "y", "w", "h", "score"}]}``
(pixels, ``labeling.boxes``' form, after the detector's own non-maximum suppression, every
candidate down to its score floor). The machine label keeps the boxes scored ``KEEP`` or more.

The image's confidence is how sure its least sure keep-or-drop decision is: the lowest of
``s`` over kept boxes and ``1 - s`` over dropped candidates. Not their product: a detector
returns up to a hundred candidates per image, nearly all clutter scored 0.05-0.3, and a product
over them is near 0 for every image (measured on the mnist-detection canvases: it sorted
images by how many candidates they had). Scores are no probabilities either, so this is a
ranking only: the accept step chooses the cut on random held-out images that people labeled,
where "right" means every true object matched at IoU >= 0.5 with its class and no extra box
(``boxes.image_matches``), and bounds the share of accepted images that are not right. Nothing
in the bound uses the score as a probability.

Image-level uncertainty for choosing what people see (``UNCERTAINTY``):
- ``least_confident``: 1 - the image's confidence: the one decision nearest the keep line.
  One hard object is enough; how many objects there are does not count.
- ``doubtful_boxes``: how many decisions are in doubt, each candidate within ``BAND`` of the
  keep line counting more the nearer it is. Busy images with several middling boxes first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

KEEP = 0.5
# Candidates scored within this of KEEP are decisions in doubt (``doubtful_boxes``).
BAND = 0.25


def machine_boxes(prediction: dict, *, keep: float = KEEP) -> list[dict]:
    """The boxes of a prediction that the machine label keeps, each with its score."""
    return [{k: b[k] for k in ("label", "x", "y", "w", "h", "score")}
            for b in prediction.get("boxes") or [] if b["score"] >= keep]


def machine_value(prediction: dict, *, keep: float = KEEP) -> dict:
    """The machine label's value: the kept boxes with the image's size."""
    return {"width": prediction["width"], "height": prediction["height"],
            "boxes": machine_boxes(prediction, keep=keep)}


def image_confidence(scores: Sequence[float], *, keep: float = KEEP) -> float:
    """How sure an image's least sure keep-or-drop decision is (module docstring); 1.0 for
    an image without a single candidate box."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    if s.size == 0:
        return 1.0
    return float(np.min(np.where(s >= keep, s, 1.0 - s)))


def _least_confident(scores: np.ndarray) -> float:
    return 1.0 - image_confidence(scores)


def _doubtful_boxes(scores: np.ndarray) -> float:
    return float(np.clip(1.0 - np.abs(np.asarray(scores) - KEEP) / BAND, 0.0, None).sum())


UNCERTAINTY: dict[str, Callable[[np.ndarray], float]] = {
    "doubtful_boxes": _doubtful_boxes,
    "least_confident": _least_confident,
}


def list_box_strategies() -> list[str]:
    """Strategies that choose images for people in a detection project (``random`` too)."""
    return sorted([*UNCERTAINTY, "random"])


def uncertainty(predictions: Sequence[dict], kind: str) -> np.ndarray:
    """[N] uncertainty of each image's prediction (higher: ask a person first)."""
    if kind not in UNCERTAINTY:
        raise ValueError(f"unknown box uncertainty {kind!r}; valid: {', '.join(UNCERTAINTY)}")
    score = UNCERTAINTY[kind]
    return np.array([score(np.array([b["score"] for b in p.get("boxes") or []], dtype=float))
                     for p in predictions], dtype=np.float64)


def choose_uncertain(predictions: Sequence[dict], n: int, *, kind: str,
                     rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``n`` images to ask about: the most uncertain (``kind``), ties broken at
    random; ``random``: a uniform draw."""
    n = min(n, len(predictions))
    if kind == "random":
        return rng.choice(len(predictions), size=n, replace=False)
    scores = uncertainty(predictions, kind)
    # A random key under the score breaks ties without favouring the pool's order.
    order = np.lexsort((rng.random(len(scores)), -scores))
    return order[:n]
