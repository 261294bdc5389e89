"""The import report follows the job while it runs (htmx polling that stops by itself), and a job that imported
nothing is a warning that says why, not a green success."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from aesplatform.catalog.models import ImportItem, ImportJob
from tests import factories

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _job(user, **fields) -> ImportJob:
    return ImportJob.objects.create(kind="folder", source_name="shoot", created_by=user, **fields)


def test_the_report_of_a_running_import_polls_and_shows_the_rows_as_they_are_now(curator_user):
    job = _job(curator_user, state="running", started_at=timezone.now(), heartbeat_at=timezone.now(), total=2)
    item = ImportItem.objects.create(job=job, name="a.jpg")
    ImportItem.objects.create(job=job, name="b.jpg")
    client = _client(curator_user)
    page = client.get(f"/imports/{job.pk}/").content.decode()
    report = page.split('<section id="import-report"')[1].split(">")[0]
    assert f'hx-get="/imports/{job.pk}/?part=report"' in report and 'hx-trigger="every 2s"' in report
    assert "Reload the report" not in page

    # the worker moves on; the next poll shows the new outcome, as a fragment without the page around it
    image = factories.ImageFactory()
    ImportItem.objects.filter(pk=item.pk).update(outcome="imported", image=image)
    fragment = client.get(f"/imports/{job.pk}/?part=report", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<section id="import-report"') and "<html" not in fragment
    assert 'data-outcome="imported"' in fragment and 'hx-trigger="every 2s"' in fragment

    # once the job has ended the fragment carries no polling: it stops
    ImportItem.objects.filter(job=job).update(outcome="imported", image=image)
    ImportJob.objects.filter(pk=job.pk).update(state="succeeded", finished_at=timezone.now(), processed=2,
                                               imported_count=2)
    fragment = client.get(f"/imports/{job.pk}/?part=report", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment and 'data-outcome="pending"' not in fragment


def test_the_report_poll_keeps_the_chosen_outcome_filter(curator_user):
    job = _job(curator_user, state="running", started_at=timezone.now(), heartbeat_at=timezone.now())
    page = _client(curator_user).get(f"/imports/{job.pk}/?outcome=error").content.decode()
    assert f'hx-get="/imports/{job.pk}/?part=report&amp;outcome=error"' in page


def test_an_import_that_imported_nothing_is_a_warning_with_the_reasons(curator_user):
    job = _job(curator_user, state="succeeded", finished_at=timezone.now(), total=5, processed=5,
               duplicate_count=3, error_count=2)
    assert job.imported_nothing
    client = _client(curator_user)
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert 'data-testid="import-nothing-warning"' in page
    assert "Nothing imported:" in page and "3 duplicates" in page and "2 failed" in page
    assert 'data-testid="import-nothing"' in page and "badge--succeeded" not in page
    listing = client.get("/imports/").content.decode()
    assert 'data-testid="import-nothing"' in listing
    # a job that imported something stays a success
    ok = _job(curator_user, state="succeeded", finished_at=timezone.now(), total=1, processed=1, imported_count=1)
    assert not ok.imported_nothing
    assert "import-nothing-warning" not in client.get(f"/imports/{ok.pk}/").content.decode()
