"""Filter runs end to end in-process (tiny random-init CLIP): create, score, propose, batch, decide; bad input."""

from __future__ import annotations

import pytest
import torch
from django.core.files.storage import default_storage

from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.common.models import JobState
from aesplatform.curation import services
from aesplatform.curation.models import BatchState, CuratorDecision, FilterResult, FilterRun, ReviewBatch
from tests import factories
from tests.support.curation import PIXEL_ONLY, run_in_process
from tests.support.scenes import (
    TINY_MODEL,
    jpeg_bytes,
    scene,
    stored_image,
    stored_scenes,
    tiny_run_kwargs,
    tiny_weights_run_kwargs,
)

pytestmark = pytest.mark.django_db


def test_run_scores_every_image_once_proposes_and_batches(curator_user):
    images = stored_scenes(5)
    dark = stored_image(jpeg_bytes(scene(99) // 12))  # nearly black: under-exposed
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in [*images, dark]],
                                     thresholds=PIXEL_ONLY, review_batch_size=4, enqueue=False, **tiny_run_kwargs())
    assert (run.state, run.total, run.processed) == (JobState.PENDING, 6, 0)
    run = run_in_process(run)
    assert (run.state, run.processed) == (JobState.SUCCEEDED, 6)
    results = {r.image_id: r for r in FilterResult.objects.filter(run=run)}
    assert len(results) == 6 and all(r.scored_at and not r.error for r in results.values())
    for r in results.values():
        assert set(r.clip_probabilities) == {"person_subject", "single_person", "photograph", "quality_problems"}
        assert len(bytes(r.embedding)) == 64 * 2  # float16 of the tiny model's 64-d embedding
        assert r.face_count == 0 and r.blur_variance > 0 and r.batch_id is not None
    assert results[dark.pk].proposed_decision == "reject"
    assert any("underexposed" in reason for reason in results[dark.pk].reasons)
    assert all(results[i.pk].proposed_decision == "keep" for i in images)
    batches = list(ReviewBatch.objects.filter(run=run))
    assert [b.number for b in batches] == [1, 2] and all(b.state == BatchState.PENDING for b in batches)
    assert set(Image.objects.filter(pk__in=results).values_list("status", flat=True)) == {ImageStatus.FILTERED}
    # executing again (a second delivery) changes nothing
    before = {r.pk: r.scored_at for r in FilterResult.objects.filter(run=run)}
    services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    assert {r.pk: r.scored_at for r in FilterResult.objects.filter(run=run)} == before


def test_missing_file_is_marked_and_the_run_goes_on(curator_user):
    images = stored_scenes(3)
    default_storage.delete(images[1].file.name)
    run = run_in_process(services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images],
                                                    thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs()))
    assert run.state == JobState.SUCCEEDED and run.processed == 3
    missing = FilterResult.objects.get(run=run, image=images[1])
    assert missing.error.startswith("file missing") and missing.batch_id is None
    assert Image.objects.get(pk=images[1].pk).status == ImageStatus.BROKEN
    assert FilterResult.objects.filter(run=run, error="", batch__isnull=False).count() == 2


def test_duplicates_are_grouped_in_one_batch_and_the_best_is_kept(curator_user):
    base = scene(7, 640, 480)
    big = stored_image(jpeg_bytes(base, quality=95))
    again = stored_image(jpeg_bytes(base, quality=94))  # other bytes, nearly the same pixels
    others = stored_scenes(6, start=20)
    run = run_in_process(services.filter_run_create(
        created_by=curator_user, image_ids=[big.pk, again.pk, *[o.pk for o in others]], review_batch_size=3,
        thresholds=PIXEL_ONLY, enqueue=False, **tiny_weights_run_kwargs()))
    a, b = FilterResult.objects.get(run=run, image=big), FilterResult.objects.get(run=run, image=again)
    kept, dropped = (a, b) if a.near_duplicate_of_id is None else (b, a)
    assert dropped.near_duplicate_of_id == kept.image_id and dropped.proposed_decision == "reject"
    assert any("duplicate of image" in r for r in dropped.reasons)
    assert kept.batch_id == dropped.batch_id
    groups = set(Image.objects.filter(pk__in=[big.pk, again.pk]).values_list("near_duplicate_group", flat=True))
    assert groups == {min(big.pk, again.pk)}


def test_thresholds_repropose_without_running_the_model(curator_user, monkeypatch):
    images = stored_scenes(4)
    run = run_in_process(services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images],
                                                    thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs()))
    assert set(FilterResult.objects.filter(run=run).values_list("proposed_decision", flat=True)) == {"keep"}
    old_batches = set(ReviewBatch.objects.filter(run=run).values_list("pk", flat=True))

    def no_model(*args, **kwargs):
        raise AssertionError("re-proposing must not load the model")

    monkeypatch.setattr("aesplatform.curation.engine.clip.ClipScorer.__init__", no_model)
    run = services.filter_run_repropose(run=run, thresholds={"min_short_side": 1000})
    assert run.thresholds["min_short_side"] == 1000 and run.thresholds["max_faces"] == 10
    results = FilterResult.objects.filter(run=run)
    assert set(results.values_list("proposed_decision", flat=True)) == {"reject"}
    assert all(any("shortest side" in r for r in res.reasons) for res in results)
    # the pending batches were refilled in place: an open batch page stays valid
    assert old_batches == set(ReviewBatch.objects.filter(run=run).values_list("pk", flat=True))
    with pytest.raises(ServiceError, match="min_short_side must be"):
        services.filter_run_repropose(run=run, thresholds={"min_short_side": -3})
    with pytest.raises(ServiceError, match="Unknown threshold"):
        services.filter_run_repropose(run=run, thresholds={"sharpness": 3})
    assert FilterRun.objects.get(pk=run.pk).thresholds["min_short_side"] == 1000


def _decided_run(curator_user, count=4, start=0):
    images = stored_scenes(count, start=start)
    run = run_in_process(services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images],
                                                    thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs()))
    return run, images, ReviewBatch.objects.get(run=run)


def test_decide_records_every_image_and_flags_overrides(curator_user):
    run, images, batch = _decided_run(curator_user)
    services.review_batch_decide(batch=batch, decided_by=curator_user,
                                 decisions=[{"image": images[2].pk, "decision": "reject"}])
    batch.refresh_from_db()
    assert batch.state == BatchState.DECIDED and batch.decided_by == curator_user and batch.decided_at
    rows = {d.image_id: d for d in CuratorDecision.objects.filter(batch=batch)}
    assert len(rows) == 4 and all(d.decided_by == curator_user for d in rows.values())
    assert rows[images[2].pk].decision == "reject" and rows[images[2].pk].overrode_proposal
    assert sum(d.overrode_proposal for d in rows.values()) == 1
    statuses = dict(Image.objects.filter(pk__in=rows).values_list("id", "status"))
    assert statuses == {i.pk: ("rejected" if i == images[2] else "approved") for i in images}


@pytest.mark.django_db(transaction=True)
def test_decide_runs_in_its_own_transaction_when_called_outside_one(curator_user):
    """As the API calls it in autocommit mode (the tests' wrapping transaction hid a lost @transaction.atomic)."""
    run, images, batch = _decided_run(curator_user)
    services.review_batch_decide(batch=batch, decided_by=curator_user)
    batch.refresh_from_db()
    assert batch.state == BatchState.DECIDED
    assert CuratorDecision.objects.filter(batch=batch).count() == len(images)


def test_decide_twice_or_with_a_foreign_image_is_refused_and_leaves_nothing(curator_user):
    run, images, batch = _decided_run(curator_user)
    other_run, other_images, other_batch = _decided_run(curator_user, count=2, start=50)
    with pytest.raises(ServiceError, match=f"Image {other_images[0].pk} is not in review batch 1 of run {run.pk}"):
        services.review_batch_decide(batch=batch, decided_by=curator_user,
                                     decisions=[{"image": images[0].pk, "decision": "reject"},
                                                {"image": other_images[0].pk, "decision": "reject"}])
    assert not CuratorDecision.objects.exists()
    assert set(Image.objects.filter(pk__in=[i.pk for i in images]).values_list("status", flat=True)) == {"filtered"}
    services.review_batch_decide(batch=batch, decided_by=curator_user)
    with pytest.raises(ConflictError, match="already decided"):
        services.review_batch_decide(batch=batch, decided_by=factories.curator(),
                                     decisions=[{"image": images[0].pk, "decision": "reject"}])
    assert CuratorDecision.objects.filter(batch=batch).count() == 4
    assert not CuratorDecision.objects.filter(overrode_proposal=True).exists()


def test_zero_images_is_refused_and_records_nothing(curator_user):
    with pytest.raises(ServiceError, match="holds no image"):
        services.filter_run_create(created_by=curator_user, source="nowhere", enqueue=False, **tiny_run_kwargs())
    with pytest.raises(ServiceError, match="holds no image"):
        services.filter_run_create(created_by=curator_user, image_ids=[], enqueue=False, **tiny_run_kwargs())
    assert not FilterRun.objects.exists() and not FilterResult.objects.exists()


def test_bad_checkpoints_are_refused_and_record_nothing(curator_user, tmp_path):
    image = factories.ImageFactory()
    kwargs = {"created_by": curator_user, "image_ids": [image.pk], "enqueue": False}
    with pytest.raises(ServiceError, match="does not exist"):
        services.filter_run_create(clip_model_name=TINY_MODEL, clip_checkpoint=str(tmp_path / "nope.pt"), **kwargs)
    with pytest.raises(ServiceError, match="Unknown CLIP model"):
        services.filter_run_create(clip_model_name="ViT-Nonexistent", clip_checkpoint="", **kwargs)
    import open_clip

    vit = tmp_path / "vit-s-32.pt"
    torch.save(open_clip.create_model("ViT-S-32").state_dict(), vit)
    with pytest.raises(ServiceError, match=f"does not match CLIP model {TINY_MODEL}"):
        services.filter_run_create(clip_model_name=TINY_MODEL, clip_checkpoint=str(vit), **kwargs)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ServiceError, match="cannot be read"):
        services.filter_run_create(clip_model_name=TINY_MODEL, clip_checkpoint=str(junk), **kwargs)
    assert not FilterRun.objects.exists() and not FilterResult.objects.exists()
    tiny = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(TINY_MODEL).state_dict(), tiny)
    run = services.filter_run_create(clip_model_name=TINY_MODEL, clip_checkpoint=str(tiny), **kwargs)
    assert run.clip_checkpoint == str(tiny)


def test_selection_rules(curator_user):
    approved = factories.ImageFactory(status=ImageStatus.APPROVED)
    free = factories.ImageFactory()
    with pytest.raises(ServiceError, match="Unknown image id"):
        services.filter_run_create(
            created_by=curator_user, image_ids=[free.pk, 10**9], enqueue=False, **tiny_run_kwargs()
        )
    with pytest.raises(ServiceError, match=f"{approved.pk} \\(approved\\)"):
        services.filter_run_create(created_by=curator_user, image_ids=[approved.pk], enqueue=False, **tiny_run_kwargs())
    services.filter_run_create(created_by=curator_user, image_ids=[free.pk], enqueue=False, **tiny_run_kwargs())
    with pytest.raises(ConflictError, match="another run"):
        services.filter_run_create(created_by=curator_user, image_ids=[free.pk], enqueue=False, **tiny_run_kwargs())
    later = factories.ImageFactory()
    run = services.filter_run_create(
        created_by=curator_user, enqueue=False, **tiny_run_kwargs()
    )  # all imported, not busy
    assert list(run.results.values_list("image_id", flat=True)) == [later.pk]


def test_invalid_prompt_set_and_thresholds_are_refused(curator_user):
    image = factories.ImageFactory()
    kwargs = {"created_by": curator_user, "image_ids": [image.pk], "enqueue": False, **tiny_run_kwargs()}
    with pytest.raises(ServiceError, match="non-empty 'negative'"):
        services.filter_run_create(prompt_set={"version": "x", "groups": {"a": {"positive": ["p"]}}}, **kwargs)
    with pytest.raises(ServiceError, match="no prompt group"):
        services.filter_run_create(thresholds={"clip": {"unknown": {"min": 0.5}}}, **kwargs)
    with pytest.raises(ServiceError, match="min_faces must not be above"):
        services.filter_run_create(thresholds={"min_faces": 3, "max_faces": 1}, **kwargs)
    assert not FilterRun.objects.exists()


def test_bad_checkpoint_at_the_worker_fails_the_run_clearly(curator_user, tmp_path):
    import open_clip

    tiny = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(TINY_MODEL).state_dict(), tiny)
    run = services.filter_run_create(created_by=curator_user, image_ids=[factories.ImageFactory().pk],
                                     clip_model_name=TINY_MODEL, clip_checkpoint=str(tiny), enqueue=False)
    tiny.unlink()  # gone between the request and the worker
    run = run_in_process(run)
    assert run.state == JobState.FAILED and "does not exist" in run.error
    assert not FilterResult.objects.filter(run=run, scored_at__isnull=False).exists()
