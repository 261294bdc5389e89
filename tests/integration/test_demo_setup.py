"""`make run`'s demo data: users with their roles and synthetic images imported with their labels, once; and
scikit-image's sample photos, left imported, on which a filter run keeps the astronaut and rejects the rest."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from aesplatform.accounts.management.commands.demo_setup import DEMO_SOURCE, SAMPLE_PHOTOS, SAMPLES_SOURCE
from aesplatform.accounts.roles import Role, user_roles
from aesplatform.annotation.models import Consensus
from aesplatform.catalog.models import Image, ImageStatus, ImportJob
from aesplatform.curation import services as curation_services
from aesplatform.curation.models import FilterResult, ProposedDecision
from tests.support.curation import run_in_process
from tests.support.scenes import tiny_run_kwargs

pytestmark = pytest.mark.django_db


def _run() -> str:
    out = io.StringIO()
    call_command("demo_setup", "--overall", "6", "--expert", "4", stdout=out)
    return out.getvalue()


def test_demo_setup_creates_role_users_and_labelled_images_once():
    first = _run()
    users = {u.username: u for u in get_user_model().objects.all()}
    assert user_roles(users["admin"]) >= {Role.ADMIN, Role.CURATOR}
    assert Role.CURATOR in user_roles(users["curator"]) and Role.ADMIN not in user_roles(users["curator"])
    assert user_roles(users["annotator1"]) == {Role.ANNOTATOR}
    assert "passwords are shown only this once" in first
    assert Image.objects.filter(import_job__source_name=DEMO_SOURCE).count() == 10
    # overall-only records label one dimension, expert records all twelve
    assert Consensus.objects.count() == 6 * 1 + 4 * 12

    second = _run()
    assert "exist already" in second and "passwords are shown" not in second
    assert Image.objects.filter(import_job__source_name=DEMO_SOURCE).count() == 10
    assert get_user_model().objects.count() == len(users)


def test_demo_setup_leaves_the_demo_images_available_for_a_new_campaign():
    from aesplatform.annotation import services as annotation_services

    out = _run()
    approved = Image.objects.filter(status=ImageStatus.APPROVED)
    demo = Image.objects.filter(import_job__source_name=DEMO_SOURCE)
    # 10 demo images: a quarter at most (2) stay imported for a filter run; the rest are approved at once
    assert approved.count() == 8 and demo.filter(status=ImageStatus.IMPORTED).count() == 2
    assert "approved for campaigns: 8" in out
    # what "New campaign" offers: the approved images
    assert Image.objects.filter(status__in=annotation_services.CAMPAIGN_IMAGE_STATUSES).count() == 8
    client = Client()
    client.force_login(get_user_model().objects.get(username="curator"))
    assert "(8 available)" in client.get("/campaigns/new/").content.decode()

    # a curator's later decision is not undone, and a second run approves nothing new
    rejected = approved.first()
    Image.objects.filter(pk=rejected.pk).update(status=ImageStatus.REJECTED)
    again = _run()
    assert "just now" not in again
    assert Image.objects.get(pk=rejected.pk).status == ImageStatus.REJECTED
    assert demo.filter(status=ImageStatus.IMPORTED).count() == 2


def test_demo_setup_imports_the_scikit_image_sample_photos_once_and_leaves_them_for_filtering():
    first = _run()
    samples = Image.objects.filter(import_job__source_name=SAMPLES_SOURCE)
    assert sorted(samples.values_list("original_name", flat=True)) == sorted(SAMPLE_PHOTOS)
    assert set(samples.values_list("status", flat=True)) == {ImageStatus.IMPORTED}  # not approved with the demo set
    assert f"Sample photos (scikit-image): {len(SAMPLE_PHOTOS)} imported" in first
    assert "approved for campaigns: 8" in first  # the approved demo set is the synthetic people alone

    second = _run()
    assert f"Sample photos exist already ({len(SAMPLE_PHOTOS)} images)" in second
    assert ImportJob.objects.filter(source_name=SAMPLES_SOURCE).count() == 1
    assert samples.count() == len(SAMPLE_PHOTOS)
    assert set(samples.values_list("status", flat=True)) == {ImageStatus.IMPORTED}


def test_a_filter_run_over_the_sample_photos_keeps_the_astronaut_and_rejects_the_photos_without_a_person():
    _run()
    curator = get_user_model().objects.get(username="curator")
    # a newcomer's run: the default thresholds, a model without a checkpoint (its CLIP signals are not used)
    run = run_in_process(curation_services.filter_run_create(
        created_by=curator, source=SAMPLES_SOURCE, enqueue=False, **tiny_run_kwargs()
    ))
    assert run.state == "succeeded"
    results = {r.image.original_name: r for r in FilterResult.objects.filter(run=run).select_related("image")}
    assert set(results) == set(SAMPLE_PHOTOS)
    astronaut, coffee = results["astronaut.png"], results["coffee.png"]
    assert astronaut.face_count == 1 and astronaut.proposed_decision == ProposedDecision.KEEP
    assert astronaut.reasons[0] == "passes every check"
    assert coffee.face_count == 0 and coffee.proposed_decision == ProposedDecision.REJECT
    assert "0 faces detected (wanted 1)" in coffee.reasons
    # both outcomes: the astronaut is the one photo kept, every other sample is rejected with its reasons
    kept = [name for name, r in results.items() if r.proposed_decision == ProposedDecision.KEEP]
    assert kept == ["astronaut.png"]
    assert all(r.reasons for r in results.values())
