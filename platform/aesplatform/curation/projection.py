"""CLIP image embeddings projected to 2-D for the embedding map (scikit-learn; no Django here).

Up to TSNE_MAX_POINTS points: PCA to PCA_DIMENSIONS first (cheap, and what t-SNE's authors recommend), then
Barnes-Hut t-SNE, which keeps neighbourhoods (near duplicates and look-alikes land together). Beyond that, PCA
alone (t-SNE's time grows past what one background task should take on two cores: measured on a loaded 2-core
VM, 2,000 points take about 30 s). Seeded: the same embeddings give the same map. Coordinates are scaled into
[0, 1] on both axes (the map draws them as they are).
"""

from __future__ import annotations

import numpy as np

TSNE_MAX_POINTS = 5_000
THREADS = 1  # BLAS/OpenMP threads: more only oversubscribe a shared 2-core machine (10x slower measured)
PCA_DIMENSIONS = 50
SEED = 0
METHOD_TSNE = "pca+tsne"
METHOD_PCA = "pca"


def _unit_box(coords: np.ndarray) -> np.ndarray:
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    scaled = (coords - low) / span
    scaled[:, high - low <= 0] = 0.5  # a degenerate axis (all points equal) is drawn in the middle
    return scaled


def project_2d(embeddings: np.ndarray, *, tsne_max_points: int = TSNE_MAX_POINTS) -> tuple[np.ndarray, str]:
    """(n, d) embeddings -> ((n, 2) coordinates in [0, 1], the method used). n >= 1."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError("embeddings must be a non-empty (n, d) array")
    n = len(x)
    if n < 3:  # too few for either method to say anything: a line, in order
        return _unit_box(np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n)])), METHOD_PCA
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=THREADS):
        return _project(x, n, tsne_max_points)


def _project(x: np.ndarray, n: int, tsne_max_points: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=min(PCA_DIMENSIONS if n <= tsne_max_points else 2, n, x.shape[1]),
                  random_state=SEED).fit_transform(x)
    if n > tsne_max_points or n < 5:
        coords = reduced[:, :2] if reduced.shape[1] >= 2 else np.column_stack([reduced[:, 0], np.zeros(n)])
        return _unit_box(coords), METHOD_PCA
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SEED,
                  learning_rate="auto").fit_transform(reduced)
    return _unit_box(coords), METHOD_TSNE
