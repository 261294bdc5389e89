"""Every list page leads to its detail pages, and the navigation marks the section of a detail page."""

from __future__ import annotations

import re

import pytest

from aesplatform.curation.models import FilterRun
from tests import factories

pytestmark = pytest.mark.django_db


def _current_nav_item(html: str) -> str | None:
    found = re.search(r'data-testid="nav-([\w-]+)"[^>]*aria-current="page"', html)
    return found.group(1) if found else None


def test_filtering_list_links_each_run_and_offers_a_new_run(client):
    curator = factories.curator()
    run = FilterRun.objects.create(name="first pass", created_by=curator)
    client.force_login(curator)
    html = client.get("/filtering/").content.decode()
    assert f'href="/filtering/{run.pk}/"' in html
    assert 'href="/filtering/new/"' in html


@pytest.mark.parametrize(
    ("path", "section"),
    [("/filtering/new/", "filtering"), ("/campaigns/new/", "campaigns"), ("/datasets/new/", "datasets")],
)
def test_a_detail_page_marks_its_section_in_the_navigation(client, path, section):
    client.force_login(factories.curator())
    response = client.get(path)
    assert response.status_code == 200
    assert _current_nav_item(response.content.decode()) == section
