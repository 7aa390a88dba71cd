"""Query strategies: which unlabeled items a human should label next.

Vocabulary: ``N`` items, ``K`` classes, ``pred_probs`` is the ``[N, K]`` array of predicted class
probabilities (rows sum to 1), ``features`` an ``[N, D]`` array of embeddings.

A strategy is ``(pred_probs, n, *, rng, features=None) -> indices``: ``n`` distinct row indices,
most informative first. Strategies are looked up by name (``get_strategy``) and trust their
inputs; ``select_for_review`` is the public entry that validates once and then dispatches.

Uncertainty scores come from modAL's score functions on probability arrays. Selection does not
use modAL's selectors: ``multi_argmax`` returns the top n unordered, and ``shuffled_argmax``
breaks ties with numpy's global random state. Here ties are broken at random by the ``rng``
passed in, so a seed reproduces a selection exactly.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

Strategy = Callable[..., np.ndarray]

# Rows of pred_probs must sum to 1 within this; float32 softmax outputs are well inside it.
ROW_SUM_TOLERANCE = 1e-3

_STRATEGIES: dict[str, Strategy] = {}
# Strategies that need the ``features`` embeddings.
_NEEDS_FEATURES: set[str] = set()


def _register(name: str, *, needs_features: bool = False) -> Callable[[Strategy], Strategy]:
    def add(fn: Strategy) -> Strategy:
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        _STRATEGIES[name] = fn
        if needs_features:
            _NEEDS_FEATURES.add(name)
        return fn

    return add


def list_strategies() -> list[str]:
    """Names of the registered query strategies, sorted."""
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy function registered under ``name``.

    The function trusts its inputs; call ``select_for_review`` to have them checked.
    Raises ``ValueError`` listing the valid names for an unknown one.
    """
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown query strategy {name!r}; valid: {', '.join(list_strategies())}"
        ) from None


# ---- uncertainty scores ---------------------------------------------------------------------
# modAL (and sklearn) are imported where used: modAL imports skorch and with it torch, about a
# second that every `labelloop` command would otherwise pay for loading its config.
def _least_confident_score(pred_probs: np.ndarray) -> np.ndarray:
    from modAL.uncertainty import _proba_uncertainty

    return _proba_uncertainty(pred_probs)


def _margin_score(pred_probs: np.ndarray) -> np.ndarray:
    from modAL.uncertainty import _proba_margin

    # modAL's margin is p(best) - p(second): small means uncertain. Flipped so that, like the
    # other scores, higher means more uncertain (and plots share one direction).
    return 1.0 - _proba_margin(pred_probs)


def _entropy_score(pred_probs: np.ndarray) -> np.ndarray:
    from modAL.uncertainty import _proba_entropy

    return _proba_entropy(pred_probs)


_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confident": _least_confident_score,
    "margin": _margin_score,
    "entropy": _entropy_score,
}


def uncertainty_scores(pred_probs: np.ndarray, kind: str) -> np.ndarray:
    """Per-item uncertainty ``[N]``; higher means more uncertain for every kind.

    Kinds: ``least_confident`` = 1 - max p; ``margin`` = 1 - (p(best) - p(second best)), in
    [0, 1]; ``entropy`` = Shannon entropy of the row in nats, in [0, log K].
    Raises ``ValueError`` for an unknown kind (listing the valid ones) or invalid ``pred_probs``.
    """
    if kind not in _SCORES:
        raise ValueError(f"unknown uncertainty kind {kind!r}; valid: {', '.join(sorted(_SCORES))}")
    return _SCORES[kind](_check_probs(pred_probs))


def _top_n(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``n`` highest scores, highest first, equal scores in random order."""
    order = rng.permutation(len(scores))
    # A stable sort keeps the random order among equal scores.
    ranked = order[np.argsort(-scores[order], kind="stable")]
    return ranked[:n]


# ---- strategies -----------------------------------------------------------------------------
@_register("random")
def _random(pred_probs, n, *, rng, features=None, labeled_features=None):
    return rng.choice(len(pred_probs), size=n, replace=False)


@_register("least_confident")
def _least_confident(pred_probs, n, *, rng, features=None, labeled_features=None):
    return _top_n(_least_confident_score(pred_probs), n, rng)


@_register("margin")
def _margin(pred_probs, n, *, rng, features=None, labeled_features=None):
    return _top_n(_margin_score(pred_probs), n, rng)


@_register("entropy")
def _entropy(pred_probs, n, *, rng, features=None, labeled_features=None):
    return _top_n(_entropy_score(pred_probs), n, rng)


@_register("ranked_batch", needs_features=True)
def _ranked_batch(pred_probs, n, *, rng, features, labeled_features=None):
    """Ranked batch-mode sampling (Cardoso et al. 2017), as modAL's ``ranked_batch``.

    Each pick maximises ``alpha * (1 - 1 / (1 + d)) + (1 - alpha) * u``, where ``u`` is the
    least-confident score, ``d`` the Euclidean distance to the nearest labeled-or-already-picked
    item and ``alpha = |unpicked| / (|unpicked| + |labeled and picked|)``: diversity dominates
    while the labeled set is small, uncertainty once it is large.

    Reimplemented on arrays because modAL's version wants a fitted learner and recomputes the
    distances to the whole growing labeled set for every pick; here the nearest distance is
    updated with the one new pick. Without ``labeled_features`` (cold start), the first pick is
    the most uncertain item (modAL takes the pool's medoid, an O(N^2) step that ignores
    uncertainty), and later picks are spread away from it.
    """
    uncertainty = _least_confident_score(pred_probs)
    # Work in a random order so that np.argmax's first-index rule breaks ties at random.
    order = rng.permutation(len(pred_probs))
    x = np.asarray(features, dtype=np.float64)[order]
    u = uncertainty[order]
    n_pool = len(x)
    if labeled_features is None or len(labeled_features) == 0:
        n_known = 0
        nearest = np.full(n_pool, np.inf)
    else:
        from sklearn.metrics import pairwise_distances_argmin_min

        n_known = len(labeled_features)
        _, nearest = pairwise_distances_argmin_min(
            x, np.asarray(labeled_features, dtype=np.float64), metric="euclidean"
        )
    picked: list[int] = []
    available = np.ones(n_pool, dtype=bool)
    for step in range(n):
        if n_known == 0:
            scores = u.copy()
        else:
            alpha = (n_pool - step) / (n_pool - step + n_known)
            scores = alpha * (1.0 - 1.0 / (1.0 + nearest)) + (1.0 - alpha) * u
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        picked.append(best)
        available[best] = False
        n_known += 1
        nearest = np.minimum(nearest, np.linalg.norm(x - x[best], axis=1))
    return order[np.asarray(picked, dtype=np.intp)]


@_register("core_set", needs_features=True)
def _core_set(pred_probs, n, *, rng, features, labeled_features=None):
    from labeling.diversity import core_set

    return core_set(features, n, rng=rng, labeled_features=labeled_features)


@_register("badge", needs_features=True)
def _badge(pred_probs, n, *, rng, features, labeled_features=None):
    from labeling.diversity import badge

    return badge(pred_probs, features, n, rng=rng)


# ---- public entry ---------------------------------------------------------------------------
def needs_features(name: str) -> bool:
    """Whether the strategy ``name`` needs the pool's embeddings (``features``)."""
    get_strategy(name)
    return name in _NEEDS_FEATURES


def select_for_review(
    pred_probs: np.ndarray,
    n: int,
    *,
    strategy: str,
    rng: np.random.Generator,
    features: np.ndarray | None = None,
    labeled_features: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``n`` items for human review with the named strategy, most informative first.

    Args:
        pred_probs: ``[N, K]`` predicted probabilities of the unlabeled pool, K >= 2, rows
            summing to 1 (within ``ROW_SUM_TOLERANCE``), finite and non-negative.
        n: how many to pick, ``0 <= n <= N``. Asking for more than the pool holds is an error
            rather than silently returning fewer: pass ``min(n, N)`` if fewer is fine.
        strategy: one of ``list_strategies()``.
        rng: the ``numpy.random.Generator`` that draws ``random`` picks and breaks ties.
        features: ``[N, D]`` embeddings of the pool; required by ``ranked_batch``,
            ``core_set`` and ``badge`` (``needs_features``), ignored by the other strategies
            (but checked when given). ``badge`` wants the input of the model's last linear
            layer.
        labeled_features: ``[L, D]`` embeddings of the already-labeled items, used by
            ``ranked_batch`` and ``core_set`` to steer away from what is known; without them
            they start from the most uncertain item and a random one (cold start).

    Returns:
        ``[n]`` distinct int indices into ``pred_probs``.

    Raises:
        ValueError: an invalid array, ``n`` or strategy name, or missing ``features``.
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
    """
    fn = get_strategy(strategy)
    probs = _check_probs(pred_probs)
    n_items = len(probs)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be an integer, got {n!r}")
    if not 0 <= n <= n_items:
        raise ValueError(
            f"n must be between 0 and the number of items ({n_items}), got {n}; "
            f"pass min(n, {n_items}) to take the whole pool"
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    if features is None and strategy in _NEEDS_FEATURES:
        raise ValueError(f"strategy {strategy!r} needs features: an [N, D] array of embeddings")
    feats = None if features is None else _check_features(features, "features", rows=n_items)
    known = None
    if labeled_features is not None:
        dims = feats.shape[1] if feats is not None else None
        known = _check_features(labeled_features, "labeled_features", cols=dims)
    return np.asarray(
        fn(probs, int(n), rng=rng, features=feats, labeled_features=known), dtype=np.intp
    )


def _check_probs(pred_probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"pred_probs must be a 2-D [N, K] array, got shape {probs.shape}")
    if probs.shape[1] < 2:
        raise ValueError(f"pred_probs needs at least 2 classes (columns), got shape {probs.shape}")
    if not np.isfinite(probs).all():
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        raise ValueError(f"pred_probs has NaN or infinite values in rows {bad[:5].tolist()}")
    if (probs < 0).any():
        bad = np.flatnonzero((probs < 0).any(axis=1))
        raise ValueError(f"pred_probs has negative values in rows {bad[:5].tolist()}")
    sums = probs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if off.size:
        raise ValueError(
            f"pred_probs rows must sum to 1 (probabilities, e.g. after softmax); rows "
            f"{off[:5].tolist()} sum to {np.round(sums[off[:5]], 4).tolist()}"
        )
    return probs


def _check_features(
    features: np.ndarray, name: str, *, rows: int | None = None, cols: int | None = None
) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {feats.shape}")
    if rows is not None and feats.shape[0] != rows:
        raise ValueError(
            f"{name} has {feats.shape[0]} rows but pred_probs has {rows}: one row per item"
        )
    if cols is not None and feats.shape[1] != cols:
        raise ValueError(
            f"{name} has {feats.shape[1]} columns but features has {cols}: same embedding size"
        )
    if not np.isfinite(feats).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return feats
