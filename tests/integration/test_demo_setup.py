"""`make run`'s demo data: users with their roles and synthetic images imported with their labels, once."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from aesplatform.accounts.roles import Role, user_roles
from aesplatform.annotation.models import Consensus
from aesplatform.catalog.models import Image

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
    assert Image.objects.count() == 10
    # overall-only records label one dimension, expert records all twelve
    assert Consensus.objects.count() == 6 * 1 + 4 * 12

    second = _run()
    assert "exist already" in second and "passwords are shown" not in second
    assert Image.objects.count() == 10
    assert get_user_model().objects.count() == len(users)


def test_demo_setup_leaves_the_demo_images_available_for_a_new_campaign():
    from aesplatform.annotation import services as annotation_services
    from aesplatform.catalog.models import ImageStatus

    out = _run()
    approved = Image.objects.filter(status=ImageStatus.APPROVED)
    # 10 demo images: a quarter at most (2) stay imported for a filter run; the rest are approved at once
    assert approved.count() == 8 and Image.objects.filter(status=ImageStatus.IMPORTED).count() == 2
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
    assert Image.objects.filter(status=ImageStatus.IMPORTED).count() == 2
