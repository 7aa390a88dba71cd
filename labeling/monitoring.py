"""Numbers that watch the loop without a model: what annotators did, how often they corrected
the pre-annotation, the class balance of labels, and drift between two samples of model outputs.

Arrays and label records in, plain JSON-ready dicts out; no torch.

Drift (``detect_drift``) compares a *reference* sample (images like those the champion was
trained on) with a *new* sample (images ingested since the previous round) on three signals,
each a cheap, deterministic two-sample test plus an effect size:

- ``confidence``: the top probability. Two-sample Kolmogorov-Smirnov; statistic D (largest gap
  between the two empirical CDFs, 0..1).
- ``predictions``: the share of each predicted class. Population stability index
  PSI = sum_k (new_k - ref_k) ln(new_k / ref_k) over class shares (half a count added to each
  class so that an empty one stays finite), tested with a chi-square test of homogeneity.
- ``embeddings``: mean shift in units of the reference spread,
  ``shift = |mean(new) - mean(ref)| / sqrt(mean |ref - mean(ref)|^2)``, tested by a permutation
  test (``N_PERMUTATIONS`` seeded relabelings of the pooled sample).

A signal drifts when its p-value is below ``ALPHA`` (so chance alone rarely raises a warning on a
small batch) **and** its effect reaches the signal's floor in ``MIN_EFFECT`` (so a batch of many
thousand images does not raise one for a shift nobody would care about). Floors: KS D 0.1 (a
tenth of the items moved across some confidence level); PSI 0.1 (the usual "moderate shift"
line; 0.25 is "major"); embedding shift 0.25 spread units (the new images' centre moved a
quarter of the typical distance of a reference image from the reference centre). With the three
tests at 1% each the chance of a false warning per round is under 3%.

For boxes (``detect_image_drift``) there are no class probabilities; two signals per image:
``confidence`` (the image's confidence, ``labeling.box_scores``; KS as above) and ``boxes``
(how many boxes the machine keeps per image; KS again, floor D 0.1: on counts the test is
conservative, ties only lower its statistic's chance of passing the floor). Both are one number
per image, so the images stay the independent units the tests assume; the class shares of the
boxes are reported, not tested, as boxes of one image are no independent draws.

Why these and not an MMD: each costs O(N D) and needs no kernel bandwidth; the mean shift misses
a change that keeps the centre (a spread change), which the confidence signal usually catches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np

from labeling.autoaccept import precision_interval
from labeling.boxes import match_boxes
from labeling.store import LabelRecord

ALPHA = 0.01
MIN_EFFECT = {"confidence": 0.1, "predictions": 0.1, "embeddings": 0.25, "boxes": 0.1}
N_PERMUTATIONS = 200
# Fewer items than this on either side: a test would say nothing; drift is not computed.
MIN_ITEMS = 20
SIGNALS = ("confidence", "predictions", "embeddings")


# ---- annotators ---------------------------------------------------------------------------
def annotator_summary(labels: Iterable[LabelRecord], classes: Sequence[str]) -> dict:
    """Human work in ``labels`` (pass the ones of the period to summarise): how many, median
    lead time in seconds, and the correction rate (``correction_rates``)."""
    human = [lab for lab in labels if lab.source == "human"]
    leads = [float(lab.extra["lead_time"]) for lab in human
             if isinstance(lab.extra.get("lead_time"), int | float)]
    return {
        "tasks_done": len(human),
        "median_lead_time_s": float(np.median(leads)) if leads else None,
        "n_lead_times": len(leads),
        "correction": correction_rates(human, classes),
    }


def correction_rates(labels: Iterable[LabelRecord], classes: Sequence[str]) -> dict:
    """How often a person changed the pre-annotation they were shown, overall and per class.

    Counted over labels whose ``extra["changed_prediction"]`` is true or false (what the Label
    Studio sync writes, ``labeling.studio.sync_store``); labels made without a pre-annotation
    are left out. Per class means per class *of the pre-annotation* (``extra["predicted"]``):
    one minus it estimates the model's precision for that class on the items it sent to people.
    ``interval``: two-sided 95% Clopper-Pearson interval of the overall rate.
    """
    n, changed = 0, 0
    per: dict[str, list[int]] = {c: [0, 0] for c in classes}
    for lab in labels:
        flag = lab.extra.get("changed_prediction")
        if not isinstance(flag, bool):
            continue
        n, changed = n + 1, changed + flag
        shown = lab.extra.get("predicted")
        if shown is not None:
            counts = per.setdefault(str(shown), [0, 0])
            counts[0], counts[1] = counts[0] + 1, counts[1] + flag
    lo, hi = precision_interval(changed, n)
    return {
        "n": n, "changed": changed, "rate": changed / n if n else None, "interval": [lo, hi],
        "per_class": {c: {"n": k, "changed": ch, "rate": ch / k if k else None}
                      for c, (k, ch) in per.items()},
    }


def box_effort(labels: Iterable[LabelRecord]) -> dict:
    """People's boxes in ``labels``: how many they drew from scratch and how many they kept
    from the pre-annotation shown (moved or not: a box of theirs counts as kept when it
    matches a shown box of its class at IoU >= 0.5). Labels without boxes count none."""
    drawn = kept = 0
    for lab in labels:
        if lab.source != "human":  # seed labels were imported, not drawn here
            continue
        boxes = (lab.value.get("boxes") or []) if isinstance(lab.value, dict) else []
        shown = (lab.extra.get("predicted_value") or {}).get("boxes") or []
        matched = len(match_boxes(shown, boxes)) if shown and boxes else 0
        kept += matched
        drawn += len(boxes) - matched
    return {"drawn": drawn, "kept": kept}


def class_balance(labels: Iterable[LabelRecord], classes: Sequence[str]) -> dict:
    """Labels in force per class, split by who gave them (people: human and seed; machine)."""
    out = {"human": {c: 0 for c in classes}, "machine": {c: 0 for c in classes}}
    for lab in labels:
        side = "machine" if lab.source == "machine" else "human"
        out[side][lab.label] = out[side].get(lab.label, 0) + 1
    return out


def labels_since(labels: Iterable[LabelRecord], since: datetime | None) -> list[LabelRecord]:
    """The labels created after ``since`` (all of them when it is None)."""
    if since is None:
        return list(labels)
    cut = as_utc(since)
    return [lab for lab in labels if as_utc(lab.created_at) > cut]


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive ones are UTC already (SQLite drops the zone on reading)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---- drift --------------------------------------------------------------------------------
def detect_drift(
    ref_probs: np.ndarray,
    new_probs: np.ndarray,
    ref_embeddings: np.ndarray | None = None,
    new_embeddings: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> dict:
    """Compare a reference and a new sample of model outputs (see the module docstring).

    ``*_probs`` [N, K]; ``*_embeddings`` [N, D] or None to skip that signal. Returns
    ``{"n_reference", "n_new", "drift", "warning", "signals": {name: {...}}}``; ``warning`` names
    the drifting signals with their effects, or is None. Raises ``ValueError`` for arrays of the
    wrong shape or with fewer than ``MIN_ITEMS`` rows.
    """
    ref_probs, new_probs = _probs(ref_probs, "ref_probs"), _probs(new_probs, "new_probs")
    if ref_probs.shape[1] != new_probs.shape[1]:
        raise ValueError(f"ref_probs has {ref_probs.shape[1]} classes, new_probs "
                         f"{new_probs.shape[1]}; predict both with the same model")
    signals = {
        "confidence": _confidence_drift(ref_probs.max(1), new_probs.max(1)),
        "predictions": _prediction_drift(ref_probs.argmax(1), new_probs.argmax(1),
                                         ref_probs.shape[1]),
    }
    if (ref_embeddings is None) != (new_embeddings is None):
        raise ValueError("give embeddings for both samples or for neither")
    if ref_embeddings is not None:
        ref_e = _rows(ref_embeddings, len(ref_probs), "ref_embeddings")
        new_e = _rows(new_embeddings, len(new_probs), "new_embeddings")
        if ref_e.shape[1] != new_e.shape[1]:
            raise ValueError(f"embeddings differ in width: {ref_e.shape[1]} vs {new_e.shape[1]}")
        signals["embeddings"] = _embedding_drift(ref_e, new_e, np.random.default_rng(seed))
    return _verdict(signals, len(ref_probs), len(new_probs))


def detect_image_drift(ref_conf, new_conf, ref_boxes, new_boxes) -> dict:
    """``detect_drift`` for task types whose outputs are boxes (module docstring): ``*_conf``
    [N] image confidences, ``*_boxes`` [N] boxes kept per image. Same record; raises
    ``ValueError`` for samples under ``MIN_ITEMS`` or of unequal lengths."""
    ref_conf, new_conf = _values(ref_conf, "ref_conf"), _values(new_conf, "new_conf")
    ref_boxes = _values(ref_boxes, "ref_boxes", len(ref_conf))
    new_boxes = _values(new_boxes, "new_boxes", len(new_conf))
    test = _stats().ks_2samp(ref_boxes, new_boxes, method="asymp")  # counts tie: no exact method
    signals = {
        "confidence": _confidence_drift(ref_conf, new_conf),
        "boxes": _signal("boxes", "KS D", test.statistic, test.pvalue,
                         mean_reference=float(ref_boxes.mean()),
                         mean_new=float(new_boxes.mean())),
    }
    return _verdict(signals, len(ref_conf), len(new_conf))


def _verdict(signals: dict, n_ref: int, n_new: int) -> dict:
    flagged = [name for name, s in signals.items() if s["drift"]]
    warning = None
    if flagged:
        parts = [f"{name} ({signals[name]['statistic']} {signals[name]['effect']:.3g} >= "
                 f"{MIN_EFFECT[name]}, p={signals[name]['p_value']:.2g})" for name in flagged]
        warning = (f"drift in {n_new} new images vs {n_ref} reference "
                   f"images: " + "; ".join(parts))
    return {"n_reference": n_ref, "n_new": n_new, "drift": bool(flagged),
            "warning": warning, "signals": signals}


def _values(a, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be one finite number per image, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} rows, its confidences {n}")
    if len(a) < MIN_ITEMS:
        raise ValueError(f"{name} has {len(a)} images; the test needs {MIN_ITEMS}")
    return a


def _stats():
    # scipy.stats takes most of a second to import, and this module is imported by every
    # command of the CLI (through the certificate); only the drift tests need it.
    import scipy.stats  # noqa: PLC0415

    return scipy.stats


def _signal(name: str, statistic: str, effect: float, p_value: float, **more) -> dict:
    return {"statistic": statistic, "effect": float(effect), "p_value": float(p_value),
            "threshold": {"alpha": ALPHA, "min_effect": MIN_EFFECT[name]},
            "drift": bool(p_value < ALPHA and effect >= MIN_EFFECT[name]), **more}


def _confidence_drift(ref: np.ndarray, new: np.ndarray) -> dict:
    test = _stats().ks_2samp(ref, new)
    return _signal("confidence", "KS D", test.statistic, test.pvalue,
                   mean_reference=float(ref.mean()), mean_new=float(new.mean()))


def _prediction_drift(ref: np.ndarray, new: np.ndarray, k: int) -> dict:
    ref_counts = np.bincount(ref, minlength=k)
    new_counts = np.bincount(new, minlength=k)
    ref_share = (ref_counts + 0.5) / (len(ref) + 0.5 * k)
    new_share = (new_counts + 0.5) / (len(new) + 0.5 * k)
    psi = float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))
    used = (ref_counts + new_counts) > 0
    if used.sum() < 2:  # one class predicted on both sides: nothing to test
        p_value = 1.0
    else:
        p_value = _stats().chi2_contingency(np.stack([ref_counts[used], new_counts[used]])).pvalue
    return _signal("predictions", "PSI", psi, p_value,
                   reference_counts=ref_counts.tolist(), new_counts=new_counts.tolist())


def _embedding_drift(ref: np.ndarray, new: np.ndarray, rng: np.random.Generator) -> dict:
    centre = ref.mean(0)
    spread = math.sqrt(float(np.mean(np.sum((ref - centre) ** 2, axis=1))))
    # A reference of identical points has no spread; any move then counts as infinite.
    scale = spread if spread > 0 else np.finfo(np.float64).tiny
    shift = float(np.linalg.norm(new.mean(0) - centre)) / scale
    pooled = np.concatenate([ref, new])
    total = pooled.sum(0)
    n_ref, n_new = len(ref), len(new)
    exceed = 0
    for _ in range(N_PERMUTATIONS):
        pick = rng.permutation(len(pooled))[:n_new]
        new_sum = pooled[pick].sum(0)
        moved = np.linalg.norm(new_sum / n_new - (total - new_sum) / n_ref) / scale
        exceed += moved >= shift
    p_value = (1 + exceed) / (1 + N_PERMUTATIONS)
    return _signal("embeddings", "mean shift", shift, p_value, reference_spread=spread,
                   permutations=N_PERMUTATIONS)


def _probs(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"{name} must be [N, K] probabilities with K >= 2, got shape {a.shape}")
    if len(a) < MIN_ITEMS:
        raise ValueError(f"{name} has {len(a)} rows; drift needs at least {MIN_ITEMS} per side")
    return a


def _rows(a, n: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(a) != n:
        raise ValueError(f"{name} must be [N, D] with one row per probability row ({n}), "
                         f"got shape {a.shape}")
    return a
