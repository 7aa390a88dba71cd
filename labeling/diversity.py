"""Batch diversity on embeddings: core-set (k-center greedy) and BADGE.

A large batch of the most uncertain items is mostly near-copies of one confusion. Both methods
here spread a batch out; they are registered as query strategies in ``labeling.strategies``.

* Core-set (Sener and Savarese, ICLR 2018), greedy k-center: each pick is the item farthest
  from everything labeled or picked so far, so the labeled set covers the pool with the
  smallest radius. It ignores the model's uncertainty.
* BADGE (Ash et al., ICLR 2020): k-means++ seeding on gradient embeddings
  ``g = (p - onehot(argmax p)) x h``, the gradient of the loss with respect to the last linear
  layer if the predicted class were the label. The norm of ``g`` grows with uncertainty and its
  direction carries the embedding, so one seeding step trades off both with no weight to tune.
  ``g`` has K * D entries per item (61,440 for MobileNetV2's 1,280 and 48 classes): it is never
  built; the squared distance factorises as
  ``|g_i - g_j|^2 = |u_i|^2 |h_i|^2 + |u_j|^2 |h_j|^2 - 2 (u_i . u_j)(h_i . h_j)``
  with ``u = p - onehot``, so one seeding step costs O(N (K + D)).
"""

from __future__ import annotations

import numpy as np


def core_set(features: np.ndarray, n: int, *, rng: np.random.Generator,
             labeled_features: np.ndarray | None = None) -> np.ndarray:
    """``n`` row indices by greedy k-center; without labeled items, the first pick is random.
    Costs O(N D) per pick."""
    x = np.asarray(features, dtype=np.float64)
    if labeled_features is None or len(labeled_features) == 0:
        nearest = np.full(len(x), np.inf)
    else:
        from sklearn.metrics import pairwise_distances_argmin_min

        _, nearest = pairwise_distances_argmin_min(x, np.asarray(labeled_features, np.float64))
    picked: list[int] = []
    for _ in range(n):
        if np.isinf(nearest).all():
            best = int(rng.integers(len(x)))
        else:
            # Random order first so that equal distances are broken at random.
            order = rng.permutation(len(x))
            best = int(order[np.argmax(nearest[order])])
        picked.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[best], axis=1))
        nearest[best] = -np.inf  # never again
    return np.asarray(picked, dtype=np.intp)


def badge(pred_probs: np.ndarray, features: np.ndarray, n: int, *,
          rng: np.random.Generator) -> np.ndarray:
    """``n`` row indices by k-means++ seeding on (implicit) gradient embeddings."""
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    p = np.asarray(pred_probs, dtype=np.float64)
    h = np.asarray(features, dtype=np.float64)
    u = p.copy()
    u[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    sq_norm = (u * u).sum(1) * (h * h).sum(1)  # |g_i|^2
    # The first centre: the largest gradient (BADGE's choice), ties at random.
    order = rng.permutation(len(p))
    first = int(order[np.argmax(sq_norm[order])])
    picked = [first]
    d2 = _sq_dist(u, h, sq_norm, first)
    taken = np.zeros(len(p), dtype=bool)
    taken[first] = True
    while len(picked) < n:
        weights = np.where(taken, 0.0, np.maximum(d2, 0.0))
        total = weights.sum()
        if total <= 0:  # every item left is a copy of a centre: take them at random
            weights = (~taken).astype(np.float64)
            total = weights.sum()
        nxt = int(rng.choice(len(p), p=weights / total))
        picked.append(nxt)
        taken[nxt] = True
        d2 = np.minimum(d2, _sq_dist(u, h, sq_norm, nxt))
    return np.asarray(picked, dtype=np.intp)


def _sq_dist(u: np.ndarray, h: np.ndarray, sq_norm: np.ndarray, j: int) -> np.ndarray:
    """|g_i - g_j|^2 for every i, from the factors."""
    return sq_norm + sq_norm[j] - 2.0 * (u @ u[j]) * (h @ h[j])
