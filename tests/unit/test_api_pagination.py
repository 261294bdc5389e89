"""Page-number pagination of the API lists (common/pagination.py): `count` is exact, counted up to a cap (null with
`count_capped` beyond it, never an estimate), or taken from a stored counter that equals a real count."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from aesplatform.catalog import services
from aesplatform.catalog.models import ImportItem, ImportJob
from aesplatform.common.models import JobState
from aesplatform.common.pagination import DefaultPagination
from tests import factories
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def five_images(db):
    return [factories.ImageFactory(source="a" if n < 2 else "b") for n in range(5)]


@pytest.fixture
def cap(monkeypatch):
    def set_cap(value: int) -> None:
        monkeypatch.setattr(DefaultPagination, "count_cap", value)

    return set_cap


def test_under_the_cap_the_count_is_exact_and_the_pages_end_where_it_says(curator_client, five_images, cap):
    cap(10)
    first = curator_client.get("/api/images/?page_size=2").json()
    assert (first["count"], first["count_capped"], len(first["results"])) == (5, False, 2)
    assert first["previous"] is None and "page=2" in first["next"]
    third = curator_client.get("/api/images/?page_size=2&page=3").json()
    assert ([r["id"] for r in third["results"]], third["next"]) == ([five_images[-1].pk], None)
    assert "page=2" in third["previous"]
    assert curator_client.get("/api/images/?page_size=2&page=last").json()["results"] == third["results"]
    assert curator_client.get("/api/images/?page_size=2&page=4").status_code == 404
    assert curator_client.get("/api/images/?page=0").status_code == 404
    assert curator_client.get("/api/images/?page=x").status_code == 404


def test_exactly_at_the_cap_the_count_is_still_given(curator_client, five_images, cap):
    cap(5)
    body = curator_client.get("/api/images/").json()
    assert (body["count"], body["count_capped"]) == (5, False)


def test_over_the_cap_the_count_is_null_and_says_more_than_the_cap(curator_client, five_images, cap):
    cap(3)
    first = curator_client.get("/api/images/?page_size=2").json()
    assert (first["count"], first["count_capped"], len(first["results"])) == (None, True, 2)
    assert "page=2" in first["next"]
    # the pages still end where the rows end: `next` comes from reading one row past the page
    third = curator_client.get("/api/images/?page_size=2&page=3").json()
    assert ([r["id"] for r in third["results"]], third["next"]) == ([five_images[-1].pk], None)
    assert curator_client.get("/api/images/?page_size=2&page=4").status_code == 404
    last = curator_client.get("/api/images/?page=last")
    assert last.status_code == 404 and "more than 3 rows" in last.json()["detail"]
    # a filtered list under the cap is counted exactly
    filtered = curator_client.get("/api/images/?source=a").json()
    assert (filtered["count"], filtered["count_capped"]) == (2, False)


def test_the_capped_count_reads_at_most_the_cap_plus_one_rows(curator_client, five_images, cap):
    cap(3)
    with CaptureQueriesContext(connection) as queries:
        curator_client.get("/api/images/")
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1 and "LIMIT 4" in counts[0]


@pytest.fixture
def finished_job(curator_user, import_root):
    folder = import_root / "f"
    folder.mkdir()
    for n in range(3):
        (folder / f"ok{n}.jpg").write_bytes(jpeg_bytes(seed=20 + n))
    (folder / "again.jpg").write_bytes(jpeg_bytes(seed=20))
    (folder / "bad.jpg").write_bytes(b"text")
    job = services.import_job_create(created_by=curator_user, kind="folder", path=str(folder), enqueue=False)
    return services.import_job_run(job_id=job.pk)


@pytest.mark.parametrize("outcome", ["", "imported", "duplicate", "error", "pending"])
def test_a_finished_jobs_items_are_counted_by_its_counters_which_equal_a_real_count(
    curator_client, finished_job, cap, outcome
):
    cap(1)  # counting would be capped: an exact count over the cap can only be the stored one
    assert finished_job.state == JobState.SUCCEEDED
    items = ImportItem.objects.filter(job=finished_job, **({"outcome": outcome} if outcome else {}))
    with CaptureQueriesContext(connection) as queries:
        body = curator_client.get(f"/api/imports/{finished_job.pk}/items/?outcome={outcome}").json()
    assert (body["count"], body["count_capped"]) == (items.count(), False)
    assert sorted(r["id"] for r in body["results"]) == sorted(items.values_list("id", flat=True))
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


def test_an_active_jobs_items_are_counted(curator_client, finished_job, cap):
    ImportJob.objects.filter(pk=finished_job.pk).update(state=JobState.RUNNING, imported_count=99)
    cap(10)
    body = curator_client.get(f"/api/imports/{finished_job.pk}/items/?outcome=imported").json()
    assert (body["count"], body["count_capped"]) == (3, False)


def test_the_import_page_counts_a_finished_jobs_items_by_its_counters(curator_user, finished_job):
    client = Client()
    client.force_login(curator_user)
    for outcome in ("", "imported", "duplicate", "error"):
        items = ImportItem.objects.filter(job=finished_job, **({"outcome": outcome} if outcome else {}))
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/imports/{finished_job.pk}/?outcome={outcome}")
        assert response.status_code == 200
        assert response.context["page_obj"].paginator.count == items.count()
        assert not [q for q in queries.captured_queries
                    if "COUNT(" in q["sql"].upper() and "catalog_importitem" in q["sql"]]


def test_the_schema_documents_a_nullable_count_and_count_capped():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    page = schema["components"]["schemas"]["PaginatedImageList"]
    assert page["properties"]["count"]["nullable"] is True
    assert page["properties"]["count_capped"]["type"] == "boolean"
    assert {"count", "count_capped", "results"} <= set(page["required"])


def test_the_browsable_api_renders_a_capped_list(curator_client, five_images, cap):
    cap(3)
    response = curator_client.get("/api/images/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"count_capped" in response.content


def test_a_list_of_rows_is_counted_up_to_the_cap_too(five_images):
    from aesplatform.common.pagination import capped_count

    assert capped_count(list(range(5)), cap=10) == 5
    assert capped_count(list(range(5)), cap=3) == 4  # more than the cap
