"""`make run`'s demo data: users with their roles and synthetic images imported with their labels, once."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

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
