"""The split rules (pure): deterministic for a seed, near-duplicate groups on one side, per-source ratio,
stratified by level."""

from __future__ import annotations

import hashlib
import random

import pytest

from aesplatform.datasets.splits import assign_splits


def synthetic(n: int, *, seed: int = 1, group_every: int = 7):
    rng = random.Random(seed)
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(n)]
    sources = [rng.choice(["FFHQ", "CelebA", "LAION"]) for _ in range(n)]
    is_expert = [rng.random() < 0.4 for _ in range(n)]
    levels = [rng.randrange(5) for _ in range(n)]
    # groups of 2..5 near duplicates, sharing the source of their first member
    groups: list[int | None] = [None] * n
    i = 0
    while i < n:
        if i % group_every == 0:
            size = rng.randrange(2, 6)
            for j in range(i, min(n, i + size)):
                groups[j] = 10_000 + i
                sources[j] = sources[i]
            i += size
        else:
            i += 1
    return dict(keys=keys, sources=sources, is_expert=is_expert, levels=levels, groups=groups)


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    data = synthetic(3000)
    a = assign_splits(**data, seed=5, test_ratio=0.1)
    b = assign_splits(**data, seed=5, test_ratio=0.1)
    c = assign_splits(**data, seed=6, test_ratio=0.1)
    assert a.is_test == b.is_test and a.report == b.report
    assert a.is_test != c.is_test


def test_the_split_does_not_depend_on_the_order_of_the_input():
    data = synthetic(1000)
    order = list(range(1000))
    random.Random(3).shuffle(order)
    shuffled = {k: [v[i] for i in order] for k, v in data.items()}
    a = assign_splits(**data, seed=9, test_ratio=0.1).is_test
    b = assign_splits(**shuffled, seed=9, test_ratio=0.1).is_test
    assert [a[i] for i in order] == b


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_near_duplicate_group_straddles_train_and_test(seed):
    data = synthetic(2000, seed=seed, group_every=3)
    result = assign_splits(**data, seed=seed, test_ratio=0.2)
    sides: dict[int, set[bool]] = {}
    for group, test in zip(data["groups"], result.is_test):
        if group is not None:
            sides.setdefault(group, set()).add(test)
    assert sides and all(len(s) == 1 for s in sides.values())
    assert any(s == {True} for s in sides.values())  # groups do go to test, whole
    assert result.report["near_duplicate_groups"]["straddling"] == 0


def test_each_source_gets_the_ratio_and_each_level_is_represented():
    data = synthetic(6000, group_every=10)
    result = assign_splits(**data, seed=0, test_ratio=0.1)
    report = result.report
    for name, counts in report["by_source"].items():
        assert abs(counts["test_fraction"] - 0.1) < 0.01, (name, counts)
    for level, counts in report["by_level"].items():
        assert abs(counts["test_fraction"] - 0.1) < 0.02, (level, counts)
    for kind, counts in report["by_kind"].items():
        assert abs(counts["test_fraction"] - 0.1) < 0.02, (kind, counts)
    assert report["train"] + report["test"] == 6000
    assert report["max_source_deviation"] < 0.01


def test_a_singleton_source_and_bad_ratios():
    one = dict(keys=["a"], sources=["x"], is_expert=[False], levels=[2], groups=[None])
    assert assign_splits(**one, seed=0, test_ratio=0.1).is_test == [False]
    with pytest.raises(ValueError):
        assign_splits(**one, seed=0, test_ratio=1.0)
    with pytest.raises(ValueError):
        assign_splits(**{**one, "keys": ["a", "b"]}, seed=0, test_ratio=0.1)
