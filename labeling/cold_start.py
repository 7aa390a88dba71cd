"""The first training labels, chosen from embeddings for typicality and coverage (TypiClust).

Before any model exists, a random first batch spends labels on outliers and on crowded regions
twice. TypiClust (Hacohen, Dekel and Weinshall, "Active Learning on a Budget", ICML 2022)
clusters the pool's embeddings into as many clusters as there will be labels, and from each
cluster that no label covers yet, largest first, takes its most typical item: the one whose
nearest neighbours in the cluster are closest (typicality = 1 / mean distance to them). With a
pretrained backbone that puts one label in each dense region of the data, which is what a
few-label classifier needs.

This is only for training picks: the held-out items that thresholds and audits are tested on
are drawn at random by the caller, never by this module.
"""

from __future__ import annotations

import numpy as np

# The paper's choices: typicality over 20 neighbours; clusters smaller than 5 are skipped
# (outliers) while larger ones remain.
NEIGHBOURS = 20
MIN_CLUSTER = 5
# Clustering runs on a PCA projection: distances in a 1,280-dim embedding cost 20x more and
# k-means on them is no better for picking (the leading components carry the cluster shape).
PCA_DIMS = 64


def typical_picks(
    features: np.ndarray,
    n: int,
    *,
    rng: np.random.Generator,
    labeled_features: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` distinct row indices of ``features`` [N, D], most useful first.

    ``labeled_features`` [L, D] are items already labeled: clusters they fall in count as
    covered, so new picks go elsewhere first. Raises ValueError for ``n`` outside [0, N] or
    arrays of the wrong shape.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D [N, D] array, got shape {x.shape}")
    if not 0 <= n <= len(x):
        raise ValueError(f"n must be between 0 and the number of items ({len(x)}), got {n}")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    known = np.zeros((0, x.shape[1])) if labeled_features is None else np.asarray(
        labeled_features, dtype=np.float64)
    if known.ndim != 2 or known.shape[1] != x.shape[1]:
        raise ValueError(f"labeled_features must be [L, {x.shape[1]}], got shape {known.shape}")
    z, z_known = _project(x, known, rng)
    n_clusters = min(len(x), len(known) + n)
    clusters, covered = _cluster(z, z_known, n_clusters, rng)
    sizes = np.bincount(clusters, minlength=n_clusters)
    picked: list[int] = []
    taken = np.zeros(len(x), dtype=bool)
    while len(picked) < n:
        free = np.bincount(clusters[~taken], minlength=n_clusters)
        # Least covered first, then the largest; outlier clusters only when nothing else is left.
        big_enough = (sizes >= MIN_CLUSTER) & (free > 0)
        usable = big_enough if big_enough.any() else free > 0
        order = np.lexsort((-sizes, covered))  # by coverage, ties by size, largest first
        cluster = next(int(c) for c in order if usable[c])
        members = np.flatnonzero((clusters == cluster) & ~taken)
        best = members[int(np.argmax(_typicality(z[members])))]
        picked.append(int(best))
        taken[best] = True
        covered[cluster] += 1
    return np.asarray(picked, dtype=np.intp)


def _project(x: np.ndarray, known: np.ndarray, rng: np.random.Generator):
    if x.shape[1] <= PCA_DIMS or len(x) <= PCA_DIMS:
        return x, known
    from sklearn.decomposition import PCA

    pca = PCA(n_components=PCA_DIMS, random_state=int(rng.integers(2**31))).fit(x)
    return pca.transform(x), pca.transform(known) if len(known) else known[:, :0]


def _cluster(z, z_known, n_clusters, rng) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, how many labeled items each cluster holds)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    seed = int(rng.integers(2**31))
    # Lloyd's k-means is exact and fast enough to tens of thousands of rows; past that the
    # mini-batch variant keeps the cold start in seconds. Three starts: one often lands in a
    # local optimum that splits a large region and merges two small ones, the error that
    # costs a small class its only label.
    if len(z) <= 20_000:
        km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=n_clusters, n_init=3, random_state=seed,
                             batch_size=4096)
    clusters = km.fit_predict(z)
    covered = np.zeros(n_clusters, dtype=np.int64)
    if len(z_known):
        np.add.at(covered, km.predict(z_known), 1)
    return clusters, covered


def _typicality(z: np.ndarray) -> np.ndarray:
    """1 / mean Euclidean distance to each row's nearest neighbours among the rows given."""
    if len(z) == 1:
        return np.ones(1)
    from sklearn.neighbors import NearestNeighbors

    k = min(NEIGHBOURS, len(z) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    return 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)  # column 0 is the row itself
