"""One threshold on a per-image confidence, for task types whose label is more than a class
(detection: all of an image's boxes), chosen and bounded as the pooled threshold is.

The items are random held-out images that people labeled; an image is *wrong* when the
machine's label for it is not the people's (for boxes: ``boxes.image_matches`` fails). Cuts at
the images' own confidences are tested strictest first, each chain of tests stopping at its
first failure (``labeling.fixed_sequence.fallback_scan``), so that with probability >=
``confidence`` the share of accepted images that are wrong is at most 1 - ``target_precision``.

The scan runs from two starts fixed by counts alone, never by which images are wrong: the
first cut where no wrong image would pass, and the first where one would, with the error budget
split between them (``labeling.fixed_sequence.fallback_scan``). Not a plan from the confidences,
as the class rules use: an image's confidence is its least sure keep-or-drop decision, and read
as a chance of being wrong it is about ten times too high (the 100 surest held-out images of the
perfect-person detection bench summed to 14-21 expected wrong, 1-2 real), so the plan always
chose the strictest start. That start is stopped for good by one object the detector never saw
(a small digit, no candidate box at all, so no doubt) among the surest images; the start that
tolerates one needs many more held-out images (on half the budget at 95%: 110 rather than 72
with people taken as right, 147 rather than 97 with a crowd's measured rho of 0.25), and the
first wrong images may arrive before it. Replayed on stored detection runs
(docs/benchmarks.md): on three
runs before warm starts the strict start alone certified a cut in 6 rounds, the tolerant one in
8, a Bonferroni split in 7; on three since, the strict start alone in 18, the tolerant one alone in
15, the fallback split in 16, which include the one round of the 5%-fault crowd run that could
pass (its round 8, rho's bound 0.25) that the tolerant start alone misses.

Assumes, as the classification bound does: the held-out images are a random sample of the
pool; ``reference_error`` bounds the chance that people repeat a wrong machine label (the
bound is divided by 1 - rho); and an image the people got wrong counts as a disagreement
(which only makes the bound larger) unless they erred exactly as the machine did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.annotators import AnnotatorErrorBound, as_rate_and_alpha, split_alpha
from labeling.autoaccept import pooled_cut

START_TOLERATES = (0, 1)  # wrong images each start may hold and still pass (docstring)


@dataclass(frozen=True)
class ImageThreshold:
    """The cut (None: nothing may be accepted), the bound on the wrong share above it, and the
    held-out images above it, with how many of them were wrong."""

    threshold: float | None
    bound: float | None
    n: int
    wrong: int
    target_precision: float
    confidence: float
    reason: str

    def accept(self, conf: np.ndarray) -> np.ndarray:
        """[N] bool: the pool images whose confidence reaches the cut."""
        conf = np.asarray(conf, dtype=np.float64)
        if self.threshold is None:
            return np.zeros(conf.shape, bool)
        return conf >= self.threshold

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "bound": self.bound, "n": self.n,
                "wrong": self.wrong, "target_precision": self.target_precision,
                "confidence": self.confidence, "reason": self.reason}


def image_threshold(conf, wrong, *, target_precision: float = 0.95, confidence: float = 0.95,
                    min_points: int = 10,
                    reference_error: float | AnnotatorErrorBound = 0.0) -> ImageThreshold:
    """The loosest cut on held-out images' confidences ``conf`` [N] (machine vs people:
    ``wrong`` [N] bool) that the fixed-sequence scan certifies (module docstring)."""
    conf = np.asarray(conf, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=bool)
    if conf.ndim != 1 or wrong.shape != conf.shape:
        raise ValueError(f"conf and wrong must be [N] each, got {conf.shape} and {wrong.shape}")
    if conf.size and not (np.all(conf >= 0) and np.all(conf <= 1)):
        raise ValueError("conf must be in [0, 1] (NaN counts as out of range)")
    if not 0.5 < target_precision < 1 or not 0.5 < confidence < 1:
        raise ValueError("target_precision and confidence must be in (0.5, 1)")
    if min_points < 1:
        raise ValueError("min_points must be >= 1")
    rho, _ = as_rate_and_alpha(reference_error, "reference_error")
    level = 1 - split_alpha(confidence, reference_error=reference_error)["left"]
    max_error = 1.0 - target_precision
    if len(conf) < min_points:
        return ImageThreshold(None, None, len(conf), int(wrong.sum()), target_precision,
                              confidence, f"too little validation data: {len(conf)} held-out "
                                          f"images < {min_points}")
    cut, bound = pooled_cut(conf, np.zeros(len(conf), dtype=np.int64), wrong, 1, level=level,
                            max_error=max_error, min_points=min_points, rho=rho,
                            tolerate=START_TOLERATES)
    if cut is None:
        return ImageThreshold(None, None, len(conf), int(wrong.sum()), target_precision,
                              confidence, f"the bound on wrong images never reached "
                                          f"{max_error:.3f} before the scan stopped")
    above = conf >= cut
    return ImageThreshold(cut, bound, int(above.sum()), int((above & wrong).sum()),
                          target_precision, confidence, "ok")
