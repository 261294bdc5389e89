"""The review stream and its API read the queue in SQL (issue 20): the same ratings, in the same order, as a
straightforward Python computation over every row of the campaign, for every filter and order; and a constant
number of SQL statements whatever the number of ratings (3 against 30)."""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from aesplatform.annotation import selectors, services
from aesplatform.annotation.models import (
    Annotation,
    AnnotationReview,
    Assignment,
    AssignmentState,
    Consensus,
    ConsensusOrigin,
)
from model_core.standard import DIMENSIONS, OVERALL, score_to_level_index
from tests import factories
from tests.support.annotation import campaign_for

pytestmark = pytest.mark.django_db

VALUES = (0.1, 0.3, 0.5, 0.5, 0.9, 0.7)  # repeated values: equal deviations, ordered by id


def scores(n: int) -> dict[str, float]:
    return {d.key: VALUES[(n + d.index * (n % 3)) % len(VALUES)] for d in DIMENSIONS}


def world(images: int) -> dict:
    """A campaign of `images` images rated by three annotators (expert mode), its first image gold (reference
    0.9) and flagged by a fourth; reviews (accepted, accepted then corrected by the annotator, corrected by a
    curator, rejected) and a correction of a correction; the consensus recomputed after all of it."""
    users = [factories.annotator() for _ in range(3)]
    flagger = factories.annotator()
    campaign = campaign_for([*users, flagger], images=images, redundancy=4, mode="expert")
    first = campaign.tasks.order_by("id").first()
    first.is_gold = True
    first.save()
    Consensus.objects.create(image_id=first.image_id, dimension=OVERALL.index, origin=ConsensusOrigin.IMPORTED,
                             score=0.9, method="imported")
    ratings = []
    for n in range(images * len(users)):
        user = users[n % len(users)]
        lease = services.task_lease_next(campaign=campaign, annotator=user)
        ratings.append(services.annotation_submit(assignment_id=lease.id, annotator=user, scores=scores(n),
                                                  idempotency_key=uuid.uuid4())[0])
    lease = services.task_lease_next(campaign=campaign, annotator=flagger)
    services.assignment_flag(assignment_id=lease.id, annotator=flagger)
    curator = factories.curator()
    services.annotation_review(annotation_id=ratings[0].pk, reviewer=curator, state="accepted")
    services.annotation_review(annotation_id=ratings[1].pk, reviewer=curator, state="accepted")
    services.annotation_correct(annotation_id=ratings[1].pk, annotator=users[1], scores=scores(40),
                                idempotency_key=uuid.uuid4())
    services.annotation_review_correct(annotation_id=ratings[2].pk, reviewer=curator, scores=scores(41),
                                       reason="misread", idempotency_key=uuid.uuid4())
    if len(ratings) > 4:
        services.annotation_review(annotation_id=ratings[3].pk, reviewer=curator, state="rejected", reason="off")
        again, _ = services.annotation_correct(annotation_id=ratings[4].pk, annotator=users[1], scores=scores(42),
                                               idempotency_key=uuid.uuid4())
        services.annotation_correct(annotation_id=again.pk, annotator=users[1], scores=scores(43),
                                    idempotency_key=uuid.uuid4())
    services.consensus_update_for_campaign(campaign=campaign)
    return {"campaign": campaign, "users": users, "curator": curator}


def expected_queue(campaign, *, annotator_id=None, status="unreviewed", flagged=False, gold_failed=False,
                   order="submitted") -> list[int]:
    """The queue computed the plain way: every row of the campaign read into Python."""
    rows = list(Annotation.objects.filter(task__campaign=campaign).select_related("task").order_by("id"))
    by_id = {a.pk: a for a in rows}
    superseded = {a.supersedes_id for a in rows if a.supersedes_id}
    reviews = {r.annotation_id: r for r in AnnotationReview.objects.all()}
    flagged_tasks = set(Assignment.objects.filter(state=AssignmentState.FLAGGED).values_list("task_id", flat=True))
    consensus = {(c.image_id, DIMENSIONS[c.dimension].key): c.score
                 for c in Consensus.objects.filter(campaign=campaign, origin=ConsensusOrigin.CAMPAIGN)}
    references = {c.image_id: c.score for c in Consensus.objects.filter(origin=ConsensusOrigin.IMPORTED,
                                                                        dimension=OVERALL.index)}
    found = []
    for a in rows:
        if a.pk in superseded or (annotator_id is not None and a.annotator_id != annotator_id):
            continue
        original = a
        while original.supersedes_id:
            original = by_id[original.supersedes_id]
        review = reviews.get(original.pk)
        state = review.state if review and review.version_id == a.pk else "unreviewed"
        if status != "all" and state != status:
            continue
        if flagged and a.task_id not in flagged_tasks:
            continue
        reference = references.get(a.task.image_id) if a.task.is_gold else None
        if gold_failed and (reference is None or score_to_level_index(getattr(a, OVERALL.key))
                            == score_to_level_index(reference)):
            continue
        deviations = [abs(getattr(a, d.key) - consensus[(a.task.image_id, d.key)]) for d in DIMENSIONS
                      if getattr(a, d.key) is not None and (a.task.image_id, d.key) in consensus]
        found.append((a.pk, max(deviations) if deviations else None))
    if order == "deviation":
        found.sort(key=lambda f: (f[1] is None, -(f[1] or 0.0), f[0]))
    return [pk for pk, _ in found]


FILTERS = [
    dict(status=status, order=order, flagged=flagged, gold_failed=gold, by_annotator=by_annotator)
    for status, order, flagged, gold, by_annotator in itertools.product(
        selectors.REVIEW_STATUSES, selectors.REVIEW_ORDERS, (False, True), (False, True), (False, True))
]


def test_the_queue_its_count_and_the_api_equal_a_python_computation_for_every_filter_and_order():
    w = world(images=5)
    campaign, users = w["campaign"], w["users"]
    # every rating (submitted, corrected by its annotator or a curator) carries its task's campaign
    assert Annotation.objects.filter(task__campaign=campaign).count() == 19
    assert not Annotation.objects.exclude(campaign_id=F("task__campaign_id")).exists()
    api = APIClient()
    api.force_authenticate(w["curator"])
    nonempty = set()
    for f in FILTERS:
        f = dict(f)
        annotator_id = users[1].pk if f.pop("by_annotator") else None
        expected = expected_queue(campaign, annotator_id=annotator_id, **f)
        got = [e.annotation_id for e in selectors.review_queue(campaign=campaign, annotator_id=annotator_id, **f)]
        assert got == expected, f
        order = f.pop("order")
        assert selectors.review_queue_count(campaign=campaign, annotator_id=annotator_id, **f) == len(expected)
        query = {k: str(v).lower() for k, v in f.items()} | {"order": order, "limit": 3}
        if annotator_id:
            query["annotator"] = annotator_id
        answer = api.get(f"/api/campaigns/{campaign.pk}/review/", query).json()
        assert answer["count"] == len(expected) and answer["count_capped"] is False
        assert [e["annotation_id"] for e in answer["results"]] == expected[:3]
        if expected:
            nonempty.add(f["status"])
    assert nonempty == set(selectors.REVIEW_STATUSES)  # the world has a rating of every status


def walk(client, url: str, key: str) -> list[tuple[int, int, int]]:
    """(rating, position, size) of every page met following `key` (next_url / prev_url) from `url`."""
    met = []
    while url:
        page = client.get(url)
        assert page.status_code == 200
        if page.context["entry"] is None:
            break
        met.append((page.context["entry"].annotation_id, page.context["position"], page.context["queue_size"]))
        url = page.context[key]
    return met


@pytest.mark.parametrize("query", ["status=all&order=deviation", "status=all", "order=deviation",
                                   "status=accepted&order=deviation", "flagged=on&status=all&order=deviation"])
def test_the_review_stream_walks_the_queue_in_order_both_ways_with_positions(query):
    w = world(images=4)
    campaign = w["campaign"]
    client = Client()
    client.force_login(w["curator"])
    params = {k: v[0] for k, v in parse_qs(query).items()}
    expected = expected_queue(campaign, status=params.get("status", "unreviewed"),
                              order=params.get("order", "submitted"), flagged="flagged" in params)
    assert expected
    url = f"/campaigns/{campaign.pk}/review/?{query}"
    forward = walk(client, url, "next_url")
    assert forward == [(pk, i + 1, len(expected)) for i, pk in enumerate(expected)]
    backward = walk(client, f"{url}&at={expected[-1]}", "prev_url")
    assert backward == forward[::-1]
    # a rating that is not in the queue: its first one
    assert client.get(f"{url}&at=999999999").context["entry"].annotation_id == expected[0]
    if len(expected) > 1:
        prev = parse_qs(urlparse(client.get(f"{url}&at={expected[-1]}").context["prev_url"]).query)
        assert prev["at"] == [str(expected[-2])]


def test_a_rating_newer_than_the_last_consensus_computation_comes_last_in_deviation_order():
    w = world(images=2)
    campaign, users = w["campaign"], w["users"]
    before = expected_queue(campaign, status="all", order="deviation")
    newest = Annotation.objects.filter(task__campaign=campaign, annotator=users[0], superseded_by__isnull=True).first()
    fixed, _ = services.annotation_correct(annotation_id=newest.pk, annotator=users[0], scores=scores(5),
                                           idempotency_key=uuid.uuid4())
    queue = selectors.review_queue(campaign=campaign, status="all", order="deviation")
    assert [e.annotation_id for e in queue] == [pk for pk in before if pk != newest.pk] + [fixed.pk]
    assert fixed.review_deviation is None and queue[-1].deviation is not None  # shown live, ordered as stored
    services.consensus_update_for_campaign(campaign=campaign)
    assert [e.annotation_id for e in selectors.review_queue(campaign=campaign, status="all", order="deviation")] \
        == expected_queue(campaign, status="all", order="deviation")


def test_the_review_page_and_api_run_as_many_statements_for_30_ratings_as_for_3():
    def counts(w: dict) -> list[int]:
        campaign, users = w["campaign"], w["users"]
        middle = expected_queue(campaign, status="all", order="deviation")
        at = middle[len(middle) // 2]
        page = f"/campaigns/{campaign.pk}/review/"
        api = f"/api/campaigns/{campaign.pk}/review/"
        urls = [page, f"{page}?status=all&order=deviation&at={at}", f"{page}?status=all&annotator={users[1].pk}",
                f"{page}?status=all&flagged=on&order=deviation", f"{page}?status=all&gold_failed=on",
                f"{page}?status=accepted", api, f"{api}?status=all&order=deviation&limit=100",
                f"{api}?status=all&flagged=true&annotator={users[0].pk}"]
        client = Client()
        client.force_login(w["curator"])
        found = []
        for url in urls:
            assert client.get(url).status_code == 200, url  # first use (session, caches)
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200, url
            found.append(len(queries))
        return found

    small = world(images=1)
    assert Annotation.objects.filter(task__campaign=small["campaign"], supersedes__isnull=True).count() == 3
    small_counts = counts(small)
    big = world(images=10)
    assert Annotation.objects.filter(task__campaign=big["campaign"], supersedes__isnull=True).count() == 30
    assert counts(big) == small_counts


def test_the_stream_counts_only_up_to_the_cap_and_says_so(monkeypatch):
    w = world(images=2)
    campaign = w["campaign"]
    client = Client()
    client.force_login(w["curator"])
    expected = expected_queue(campaign, status="all", order="deviation")
    url = f"/campaigns/{campaign.pk}/review/?status=all&order=deviation"
    page = client.get(f"{url}&at={expected[1]}")
    assert (page.context["position"], page.context["queue_size"]) == (2, len(expected))
    assert "as of the last consensus computation" in page.content.decode()

    monkeypatch.setattr(selectors, "REVIEW_COUNT_CAP", 2)
    capped = client.get(f"{url}&at={expected[3]}")
    assert capped.context["position"] is None and capped.context["queue_size"] is None
    assert "beyond the first 2</strong> of more than 2" in capped.content.decode()
    assert client.get(f"{url}&at={expected[1]}").context["position"] == 2
    api = APIClient()
    api.force_authenticate(w["curator"])
    answer = api.get(f"/api/campaigns/{campaign.pk}/review/", {"status": "all"}).json()
    assert answer["count"] is None and answer["count_capped"] is True and len(answer["results"]) == len(expected)
