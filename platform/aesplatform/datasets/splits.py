"""Leakage-safe train/test splits (pure Python, no Django).

Rules:
- A *unit* is a near-duplicate group (every image with the same group id) or a single image. A unit goes to
  one side as a whole, so no near-duplicate group ever straddles train and test.
- Per source (the origin data set, like the reference's per-data-set 90/10), units are ordered by
  (kind, score level, a keyed hash of the seed and the unit's key) and walked with error diffusion: a unit goes
  to test when that brings the test count closer to `test_ratio` x the images seen so far. Ordering by kind and
  level first makes the split stratified by both; the hash makes it a deterministic function of the seed.
- A unit's key is the smallest image key (sha256) in it and its stratum is that image's, so the split depends
  on the images' content and the seed only, not on database ids (an exported and re-imported set splits alike).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from model_core.standard import LEVELS

TRAIN = "train"
TEST = "test"


@dataclass
class SplitResult:
    is_test: list[bool]
    report: dict = field(default_factory=dict)


def _unit_order(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8]


def assign_splits(
    *,
    keys: Sequence[str],
    sources: Sequence[str],
    is_expert: Sequence[bool],
    levels: Sequence[int],
    groups: Sequence[int | None],
    seed: int,
    test_ratio: float,
) -> SplitResult:
    """Return for each image whether it is in the test split, and the balance report."""
    n = len(keys)
    if not (len(sources) == len(is_expert) == len(levels) == len(groups) == n):
        raise ValueError("keys, sources, is_expert, levels and groups must have the same length")
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be between 0 and 1 (exclusive), got {test_ratio!r}")

    members: dict[object, list[int]] = defaultdict(list)
    for index in range(n):
        group = groups[index]
        members[("g", group) if group is not None else ("i", index)].append(index)

    # Per source (of the unit's representative image): [(kind, level, order, representative key, members)]
    by_source: dict[str, list[tuple[bool, int, bytes, str, list[int]]]] = defaultdict(list)
    for unit in members.values():
        rep = min(unit, key=lambda i: keys[i])
        by_source[sources[rep]].append((is_expert[rep], levels[rep], _unit_order(seed, keys[rep]), keys[rep], unit))

    is_test = [False] * n
    for source in sorted(by_source):
        units = by_source[source]
        units.sort(key=lambda u: (u[0], u[1], u[2], u[3]))
        seen = 0
        in_test = 0
        for _, _, _, _, unit in units:
            size = len(unit)
            seen += size
            target = test_ratio * seen
            if abs(in_test + size - target) < abs(in_test - target):
                in_test += size
                for index in unit:
                    is_test[index] = True
    return SplitResult(is_test=is_test, report=split_report(
        is_test=is_test, sources=sources, is_expert=is_expert, levels=levels, groups=groups, seed=seed,
        test_ratio=test_ratio,
    ))


def _side_counts() -> dict[str, int]:
    return {TRAIN: 0, TEST: 0}


def split_report(
    *, is_test: Sequence[bool], sources: Sequence[str], is_expert: Sequence[bool], levels: Sequence[int],
    groups: Sequence[int | None], seed: int, test_ratio: float,
) -> dict:
    """How balanced a split is: counts and test fractions per source, kind and level; near-duplicate groups."""
    by_source: dict[str, dict[str, int]] = defaultdict(_side_counts)
    by_kind: dict[str, dict[str, int]] = defaultdict(_side_counts)
    by_level: dict[str, dict[str, int]] = defaultdict(_side_counts)
    group_sides: dict[int, set[bool]] = defaultdict(set)
    group_sizes: dict[int, int] = defaultdict(int)
    for index, test in enumerate(is_test):
        side = TEST if test else TRAIN
        by_source[sources[index]][side] += 1
        by_kind["expert" if is_expert[index] else "overall"][side] += 1
        by_level[LEVELS[levels[index]]][side] += 1
        if groups[index] is not None:
            group_sides[groups[index]].add(test)
            group_sizes[groups[index]] += 1

    def finish(table: dict[str, dict[str, int]], order: Sequence[str] | None = None) -> dict[str, dict]:
        out = {}
        for name in order if order is not None else sorted(table):
            if name not in table:
                continue
            counts = table[name]
            total = counts[TRAIN] + counts[TEST]
            out[name] = {**counts, "total": total, "test_fraction": round(counts[TEST] / total, 6) if total else 0.0}
        return out

    sources_out = finish(by_source)
    multi = [size for size in group_sizes.values() if size > 1]
    total_test = sum(1 for t in is_test if t)
    return {
        "seed": seed,
        "test_ratio": test_ratio,
        "train": len(is_test) - total_test,
        "test": total_test,
        "by_source": sources_out,
        "by_kind": finish(by_kind, ("overall", "expert")),
        "by_level": finish(by_level, LEVELS),
        "near_duplicate_groups": {
            "groups": len(multi),
            "images": sum(multi),
            "largest": max(multi, default=0),
            "straddling": sum(1 for sides in group_sides.values() if len(sides) > 1),
        },
        "max_source_deviation": round(
            max((abs(s["test_fraction"] - test_ratio) for s in sources_out.values()), default=0.0), 6
        ),
    }
