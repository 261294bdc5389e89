"""Exact and near-duplicate groups from pixel digests and CLIP embeddings.

Near duplicates come from an approximate nearest-neighbour index (faiss HNSW over inner products of
L2-normalised embeddings; an exact flat index below HNSW_MIN_SIZE where it is faster and exact): each image's
k nearest neighbours above the cosine threshold are joined with union-find. Memory is the index (about
n * d * 4 bytes + graph links), never an n x n matrix, so it scales to millions.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

HNSW_MIN_SIZE = 20_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
NEIGHBOURS = 16
SEARCH_CHUNK = 65_536


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _index(embeddings: np.ndarray):
    n, d = embeddings.shape
    if n >= HNSW_MIN_SIZE:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(d)
    index.add(embeddings)
    return index


def similar_pairs(embeddings: np.ndarray, *, threshold: float, k: int = NEIGHBOURS) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with i < j and cosine >= threshold among each row's k nearest neighbours."""
    n = embeddings.shape[0]
    if n < 2:
        return []
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    index = _index(x)
    k = min(k + 1, n)
    pairs = []
    for start in range(0, n, SEARCH_CHUNK):
        sims, ids = index.search(x[start : start + SEARCH_CHUNK], k)
        rows, cols = np.nonzero((sims >= threshold) & (ids >= 0))
        for r, c in zip(rows.tolist(), cols.tolist()):
            i, j = start + r, int(ids[r, c])
            if i != j:
                pairs.append((min(i, j), max(i, j), float(sims[r, c])))
    return pairs


@dataclass(frozen=True)
class DuplicateGroups:
    group_of: list[int]  # per row: the row index of its group's representative (itself when alone or kept)
    exact: list[bool]  # per row: pixel-identical to another member of its group


def duplicate_groups(
    embeddings: np.ndarray, digests: list[str], *, threshold: float, rank: list[tuple]
) -> DuplicateGroups:
    """Group rows that are pixel-identical (same digest) or near duplicates (cosine >= threshold).

    The representative of a group is the row with the highest `rank` (e.g. (pixels, -id)): it is the one a
    proposal keeps; the others point to it.
    """
    n = len(digests)
    uf = _UnionFind(n)
    first_with_digest: dict[str, int] = {}
    digest_count: dict[str, int] = {}
    for i, digest in enumerate(digests):
        if not digest:
            continue
        digest_count[digest] = digest_count.get(digest, 0) + 1
        if digest in first_with_digest:
            uf.union(first_with_digest[digest], i)
        else:
            first_with_digest[digest] = i
    if n >= 2 and embeddings.shape[0] == n:
        for i, j, _ in similar_pairs(embeddings, threshold=threshold):
            uf.union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    group_of = list(range(n))
    for rows in members.values():
        if len(rows) > 1:
            best = max(rows, key=lambda r: rank[r])
            for r in rows:
                group_of[r] = best
    exact = [bool(d) and digest_count.get(d, 0) > 1 for d in digests]
    return DuplicateGroups(group_of, exact)
