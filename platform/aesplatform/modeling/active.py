"""Active learning: which image should annotators rate next.

Informativeness of a pre-scored image (all three terms rank-normalised to [0, 1] over the candidates):
- head disagreement: the spread (std) of the three overall estimates (LM, regression, expert head's overall);
- MetaVoter uncertainty: the spread of the LM head's level distribution the model reports (`uncertainty`);
- diversity: a greedy pick over the CLIP image embeddings (curation's FilterResult.embedding): each next image
  maximises ``(1 - w) * informativeness + w * distance to the nearest image picked before it``, so one cluster of
  confusing images does not fill the queue.

`order_by_informativeness` is pure numpy (the benchmark in bench/active_learning.py runs it without Django);
`active_priorities` turns it into task priorities (higher first; images without a pre-score keep a random priority
below every pre-scored one), which modeling.services writes through the annotation app's service
(`campaign_priorities_refresh`, `campaigns_refresh_for_images`).
A model that does not give the terms (a released HumanAesExpert checkpoint: no LM or regression head score, no
uncertainty) is refused with `ActiveLearningUnavailable` (409) instead of ordering by values it never gave.
"""

from __future__ import annotations

import random

import numpy as np

from aesplatform.common.exceptions import ConflictError


class ActiveLearningUnavailable(ConflictError):
    """The model version does not give the head disagreement and uncertainty that active learning orders by."""

    code = "no_uncertainty"

DIVERSITY_WEIGHT = 0.3
GREEDY_CANDIDATES = 2000  # the greedy diversity pass runs over the most informative ones; the rest by informativeness


def _rank01(values: np.ndarray) -> np.ndarray:
    if len(values) <= 1:
        return np.zeros(len(values))
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / (len(values) - 1)


def informativeness(estimates: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """estimates (N, 3) overall scores of the three heads, uncertainty (N,) -> (N,) in [0, 1]."""
    disagreement = np.nanstd(np.asarray(estimates, dtype=np.float64), axis=1)
    return 0.5 * _rank01(np.nan_to_num(disagreement)) + 0.5 * _rank01(np.nan_to_num(np.asarray(uncertainty, float)))


def order_by_informativeness(info: np.ndarray, embeddings: np.ndarray | None = None, *,
                             diversity_weight: float = DIVERSITY_WEIGHT,
                             candidates: int = GREEDY_CANDIDATES) -> np.ndarray:
    """Indices, most useful first. ``embeddings`` (N, D) L2-normalised (rows of zeros: unknown, no diversity)."""
    info = np.asarray(info, dtype=np.float64)
    by_info = np.argsort(-info, kind="stable")
    if embeddings is None or len(info) <= 1 or diversity_weight <= 0:
        return by_info
    head, tail = by_info[:candidates], by_info[candidates:]
    emb = np.asarray(embeddings, dtype=np.float32)[head]
    known = np.linalg.norm(emb, axis=1) > 0
    picked: list[int] = []
    min_dist = np.full(len(head), 2.0, dtype=np.float32)  # cosine distance is at most 2
    available = np.ones(len(head), dtype=bool)
    local_info = info[head]
    for _ in range(len(head)):
        spread = np.where(known, min_dist / 2.0, 0.5)
        score = (1 - diversity_weight) * local_info + diversity_weight * spread
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        if known[best]:
            min_dist = np.minimum(min_dist, 1.0 - emb @ emb[best])
    return np.concatenate([head[picked], tail]).astype(int)


# --- the platform side ------------------------------------------------------------------------------------------


def _embeddings(image_ids: list[int]) -> np.ndarray | None:
    from aesplatform.curation.selectors import image_embeddings

    found = {image_id: np.frombuffer(raw, dtype=np.float16).astype(np.float32)
             for image_id, raw in image_embeddings(image_ids=image_ids).items()}
    if not found:
        return None
    dim = len(next(iter(found.values())))
    out = np.zeros((len(image_ids), dim), dtype=np.float32)
    for i, image_id in enumerate(image_ids):
        vector = found.get(image_id)
        if vector is not None and len(vector) == dim:
            out[i] = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return out


def active_priorities(*, image_ids: list[int], model_version=None, seed: int = 0) -> dict[int, float]:
    """image id -> priority: (1, 2] for pre-scored images in informativeness order, [0, 1) at random otherwise."""
    from .models import ModelVersion, Prescore

    model_version = model_version or ModelVersion.objects.filter(promoted=True).first()
    rng = random.Random(seed)
    rows = []
    if model_version is not None:
        rows = list(Prescore.objects.filter(model_version=model_version, image_id__in=image_ids)
                    .order_by("image_id").values_list("image_id", "lm_score", "regression_score", _overall_field(),
                                                      "uncertainty"))
    priorities = {i: rng.random() for i in image_ids}
    if rows:
        ids = [r[0] for r in rows]
        estimates = np.array([[r[1], r[2], np.nan if r[3] is None else r[3]] for r in rows], dtype=np.float64)
        info = informativeness(estimates, np.array([r[4] for r in rows]))
        order = order_by_informativeness(info, _embeddings(ids))
        n = len(order)
        for rank, index in enumerate(order):
            priorities[ids[index]] = 1.0 + (n - rank) / n
    return priorities


def active_learning_check(model_version) -> None:
    """Raise ActiveLearningUnavailable unless this model's pre-scores give every term of informativeness."""
    from django.db.models import Q

    from .models import ModelBackend, Prescore

    if model_version is None:
        return
    if model_version.backend == ModelBackend.HUMANAESEXPERT:
        raise ActiveLearningUnavailable(
            f"{model_version.name} is a released HumanAesExpert checkpoint: its remote code gives the MetaVoter and "
            "the 12 expert scores, but no LM or regression head score and no uncertainty, so there is no head "
            "disagreement or uncertainty to order tasks by. Promote a model trained on the platform for active "
            "learning, or use the random task order.")
    lacking = (Prescore.objects.filter(model_version=model_version)
               .filter(Q(lm_score__isnull=True) | Q(regression_score__isnull=True) | Q(uncertainty__isnull=True)))
    if lacking.exists():
        raise ActiveLearningUnavailable(
            f"{model_version.name}'s pre-scores lack an LM or regression head score or the uncertainty, so there "
            "is no head disagreement or uncertainty to order tasks by; use the random task order.")


def _overall_field() -> str:
    from aesplatform.common.models import DIMENSION_FIELDS

    return DIMENSION_FIELDS[-1]
