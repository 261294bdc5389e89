"""Filter runs a newcomer can trust: random weights are marked and never reject on CLIP, review batches keep the
asked size, re-proposing keeps the batch pages valid, and the scoring time per image is measured."""

from __future__ import annotations

import pytest
from django.test import Client

from aesplatform.curation import services
from aesplatform.curation.engine import proposals
from aesplatform.curation.models import FilterResult, ReviewBatch
from tests.support.curation import PIXEL_ONLY, run_in_process
from tests.support.scenes import (
    jpeg_bytes,
    scene,
    stored_image,
    stored_scenes,
    tiny_run_kwargs,
    tiny_weights_run_kwargs,
)

pytestmark = pytest.mark.django_db

# The default CLIP rules stay on; no face is needed (the scenes have none).
CLIP_RULES_NO_FACES = {"min_faces": 0, "max_faces": 10}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_clip_signals_of_random_weights_do_not_decide_a_proposal():
    signals = {"width": 640, "height": 480, "blur_variance": 500.0, "exposure": {"under": 0.0, "over": 0.0},
               "face_count": 1, "largest_face_fraction": 0.1, "clip": {"person_subject": 0.05, "photograph": 0.01}}
    thresholds = proposals.default_thresholds()
    trusted = proposals.proposal_compute(signals, thresholds)
    assert trusted.decision == "reject" and any("CLIP" in r for r in trusted.reasons)
    untrusted = proposals.proposal_compute(signals, thresholds, clip_trusted=False)
    assert untrusted.decision == "keep"
    assert proposals.RANDOM_WEIGHTS_NOTE in untrusted.reasons
    assert not any(r.startswith("CLIP '") for r in untrusted.reasons)
    # a measured signal still rejects
    dark = proposals.proposal_compute({**signals, "exposure": {"under": 0.9, "over": 0.0}}, thresholds,
                                      clip_trusted=False)
    assert dark.decision == "reject" and any("underexposed" in r for r in dark.reasons)


def test_a_run_without_checkpoint_is_marked_random_and_never_rejects_or_groups_on_clip(curator_user):
    base = scene(7, 640, 480)
    twins = [stored_image(jpeg_bytes(base, quality=95)), stored_image(jpeg_bytes(base, quality=94))]
    images = [*twins, *stored_scenes(4, start=30)]
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], thresholds=CLIP_RULES_NO_FACES,
        enqueue=False, **tiny_run_kwargs()))
    assert run.random_weights is True
    results = list(FilterResult.objects.filter(run=run))
    # the CLIP rules are on, but random weights decide nothing: every sharp, well exposed scene is kept
    assert {r.proposed_decision for r in results} == {"keep"}
    assert all(proposals.RANDOM_WEIGHTS_NOTE in r.reasons for r in results)
    # near duplicates from random embeddings would group everything: no grouping at all
    assert not any(r.near_duplicate_of_id for r in results)

    client = _client(curator_user)
    page = client.get(f"/filtering/{run.pk}/").content.decode()
    assert 'data-testid="random-weights"' in page and "random weights" in page
    batch = ReviewBatch.objects.filter(run=run).first()
    assert 'data-testid="random-weights"' in client.get(f"/filtering/batches/{batch.pk}/").content.decode()
    assert 'data-testid="run-random-weights"' in client.get("/filtering/").content.decode()


def test_a_run_with_a_checkpoint_uses_its_clip_signals(curator_user):
    images = stored_scenes(2, start=50)
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images],
                                     thresholds=CLIP_RULES_NO_FACES, enqueue=False, **tiny_weights_run_kwargs())
    assert run.random_weights is False
    run = run_in_process(run)
    assert all(proposals.RANDOM_WEIGHTS_NOTE not in r.reasons for r in FilterResult.objects.filter(run=run))
    page = _client(curator_user).get(f"/filtering/{run.pk}/").content.decode()
    assert 'data-testid="random-weights"' not in page and "local weights" in page


def test_review_pages_never_exceed_the_batch_size_and_keep_small_groups_together():
    pages = services.review_pages([[1, 2], [3, 4, 5, 6, 7, 8, 9], [10], [11, 12]], 3)
    assert all(len(p) <= 3 for p in pages)
    assert sorted(i for p in pages for i in p) == list(range(1, 13))
    assert [1, 2] in [p[:2] for p in pages] and any({11, 12} <= set(p) for p in pages)


def test_a_duplicate_group_larger_than_a_batch_is_split_to_the_asked_size(curator_user):
    images = stored_scenes(8, start=60)
    # a cosine this low groups nearly every scene with the tiny model: one group far larger than a batch
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], review_batch_size=3,
        thresholds={**PIXEL_ONLY, "near_duplicate_cosine": 0.5}, enqueue=False, **tiny_weights_run_kwargs()))
    assert FilterResult.objects.filter(run=run, near_duplicate_of__isnull=False).count() > 3
    sizes = [FilterResult.objects.filter(batch=b).count() for b in ReviewBatch.objects.filter(run=run)]
    assert sizes and max(sizes) <= 3 and sum(sizes) == 8


def test_re_proposing_keeps_the_batch_ids_and_a_removed_batch_explains_itself(curator_user):
    images = stored_scenes(6, start=70)
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], review_batch_size=2,
        thresholds={**PIXEL_ONLY, "near_duplicate_cosine": 0.999}, enqueue=False, **tiny_weights_run_kwargs()))
    before = list(ReviewBatch.objects.filter(run=run).order_by("number").values_list("pk", flat=True))
    assert len(before) == 3
    client = _client(curator_user)
    services.filter_run_repropose(run=run, thresholds={"min_short_side": 1000})
    assert list(ReviewBatch.objects.filter(run=run).order_by("number").values_list("pk", flat=True)) == before
    assert client.get(f"/filtering/batches/{before[0]}/").status_code == 200

    # a lower cosine groups the scenes: fewer batches are needed, the surplus one is removed
    run.review_batch_size = 6
    run.save(update_fields=["review_batch_size"])
    services.filter_run_repropose(run=run, thresholds={"near_duplicate_cosine": 0.5})
    after = list(ReviewBatch.objects.filter(run=run).order_by("number").values_list("pk", flat=True))
    assert after == before[:1]
    gone = client.get(f"/filtering/batches/{before[2]}/")
    assert gone.status_code == 410
    body = gone.content.decode()
    assert "This review batch was replaced" in body and f"/filtering/{run.pk}/" in body
    posted = client.post(f"/filtering/batches/{before[2]}/", {"shown": [images[0].pk]})
    assert posted.status_code == 410 and not ReviewBatch.objects.filter(state="decided").exists()


def test_the_scoring_time_per_image_is_measured(curator_user):
    images = stored_scenes(3, start=90)
    run = run_in_process(services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images],
                                                    thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs()))
    assert run.seconds_per_image is not None and 0 < run.seconds_per_image < 60


def test_the_progress_counter_moves_in_small_steps_on_a_cpu(curator_user, monkeypatch):
    from aesplatform.common import jobs

    recorded: list[int] = []
    real = jobs.job_progress

    def spy(*, job, **fields):
        written = real(job=job, **fields)
        if "processed" in fields:  # the value stored (progress is written as "at least this": an expression)
            recorded.append(type(job).objects.values_list("processed", flat=True).get(pk=job.pk))
        return written

    monkeypatch.setattr(jobs, "job_progress", spy)
    images = stored_scenes(10, start=110)
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY, batch_size=64,
        enqueue=False, **tiny_run_kwargs()))
    assert run.processed == 10
    # a model batch of 64 asked, but a CPU scores (and reports) at most CPU_BATCH_MAX images at a time
    assert recorded[:2] == [services.CPU_BATCH_MAX, 10]


def test_a_run_that_rejects_everything_names_the_check_and_points_to_the_thresholds(curator_user):
    images = stored_scenes(3, start=130)
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], thresholds={**PIXEL_ONLY, "min_short_side": 5000},
        enqueue=False, **tiny_run_kwargs()))
    page = _client(curator_user).get(f"/filtering/{run.pk}/").content.decode()
    assert 'data-testid="everything-rejected"' in page
    assert "shortest side … px (min …)" in page and "(3 images)" in page
    assert "CLIP signals not used" not in page.split('data-testid="everything-rejected"')[1].split("</div>")[0]
    services.filter_run_repropose(run=run, thresholds={"min_short_side": 100})
    page = _client(curator_user).get(f"/filtering/{run.pk}/").content.decode()
    assert 'data-testid="everything-rejected"' not in page
