"""From a detector's scored boxes to one image: the machine's label, how sure it is of the whole
image, and how much a person's look at it would teach.

A prediction is ``{"width", "height", "boxes": [{"label", "x", "y", "w", "h", "score"}]}``
(pixels, ``labeling.boxes``' form, after the detector's own non-maximum suppression, every
candidate down to its score floor). The machine label keeps the boxes scored ``KEEP`` or more.

The image's confidence is the chance that every keep-or-drop decision on it is right, were the
scores probabilities and independent: the product of ``s`` over kept boxes and of ``1 - s``
over dropped candidates. Detector scores are neither, so this is a ranking only: the accept
step chooses the cut on random held-out images that people labeled, where "right" means every
true object matched at IoU >= 0.5 with its class and no extra box (``boxes.image_matches``),
and bounds the share of accepted images that are not right. Nothing in the bound uses the
score as a probability.

Image-level uncertainty for choosing what people see (``UNCERTAINTY``):
- ``least_confident``: 1 - the image's confidence. Every doubtful box adds to it, so busy
  images with several middling boxes come first.
- ``worst_box``: how close the image's most doubtful box is to the keep line (1 at a score of
  ``KEEP``, 0 at 0 or 1). One hard object is enough; the number of objects does not count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

KEEP = 0.5


def machine_boxes(prediction: dict, *, keep: float = KEEP) -> list[dict]:
    """The boxes of a prediction that the machine label keeps, each with its score."""
    return [{k: b[k] for k in ("label", "x", "y", "w", "h", "score")}
            for b in prediction.get("boxes") or [] if b["score"] >= keep]


def machine_value(prediction: dict, *, keep: float = KEEP) -> dict:
    """The machine label's value: the kept boxes with the image's size."""
    return {"width": prediction["width"], "height": prediction["height"],
            "boxes": machine_boxes(prediction, keep=keep)}


def image_confidence(scores: Sequence[float], *, keep: float = KEEP) -> float:
    """The chance that every keep-or-drop decision on an image is right (module docstring);
    1.0 for an image without a single candidate box."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    return float(np.prod(np.where(s >= keep, s, 1.0 - s)))


def _least_confident(scores: np.ndarray) -> float:
    return 1.0 - image_confidence(scores)


def _worst_box(scores: np.ndarray) -> float:
    if len(scores) == 0:
        return 0.0
    return float(np.max(1.0 - np.abs(np.asarray(scores) - KEEP) / max(KEEP, 1 - KEEP)))


UNCERTAINTY: dict[str, Callable[[np.ndarray], float]] = {
    "least_confident": _least_confident,
    "worst_box": _worst_box,
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
