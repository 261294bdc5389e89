"""The home page says what to do first: the steps from images to a model, each with its link and whether it is
done, from the installation's actual state."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from aesplatform.annotation.models import Campaign
from tests import factories

pytestmark = pytest.mark.django_db


def _steps(user) -> dict[str, dict]:
    client = Client()
    client.force_login(user)
    html = client.get("/").content.decode()
    assert 'data-testid="first-steps"' in html
    steps = {}
    for key, done, body in re.findall(r'data-testid="step-(\w+)" data-done="(\w+)"(.*?)</li>', html, re.S):
        link = re.search(r'href="([^"]+)" data-testid="step-link-', body).group(1)
        steps[key] = {"done": done == "true", "next": 'data-testid="step-next"' in body, "link": link, "body": body}
    return steps


def test_an_empty_installation_starts_with_importing(curator_user):
    steps = _steps(curator_user)
    assert list(steps) == ["import", "filter", "campaign", "annotate", "dataset", "train"]
    assert not any(s["done"] for s in steps.values())
    assert steps["import"]["next"] and steps["import"]["link"] == "/imports/"
    assert sum(s["next"] for s in steps.values()) == 1
    assert steps["campaign"]["link"] == "/campaigns/new/"


def test_the_steps_follow_the_state_of_the_catalog(curator_user):
    factories.ImageFactory(status="imported")
    steps = _steps(curator_user)
    assert steps["import"]["done"] and steps["filter"]["next"]
    assert steps["filter"]["link"] == "/filtering/new/"  # images wait to be filtered
    assert "0 approved for campaigns; 1 waiting to be filtered" in steps["filter"]["body"]

    factories.ImageFactory(status="approved")
    steps = _steps(curator_user)
    assert steps["filter"]["done"] and steps["campaign"]["next"]

    factories.CampaignFactory(created_by=curator_user)
    assert Campaign.objects.exists()
    steps = _steps(curator_user)
    assert steps["campaign"]["done"] and steps["annotate"]["next"]


def test_annotators_do_not_see_the_curators_steps(annotator_user):
    client = Client()
    client.force_login(annotator_user)
    assert 'data-testid="first-steps"' not in client.get("/").content.decode()


def test_the_login_page_names_the_demo_user_to_start_with_when_demo_users_exist():
    assert 'data-testid="login-demo"' not in Client().get("/login/").content.decode()
    factories.curator(username="curator", email="curator@demo.invalid")
    page = Client().get("/login/").content.decode()
    assert 'data-testid="login-demo"' in page and "<code>curator</code>" in page
