"""Datasets API: curators only, bad input is a clean 4xx, one export per choice, resumable download (Range)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from aesplatform.datasets import services
from aesplatform.datasets.models import DatasetVersion, Export
from tests.support.datasets import archive_bytes, labelled_set

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_root(settings, tmp_path):
    settings.AESP_EXPORT_ROOT = tmp_path / "exports"
    settings.AESP_EXPORT_ROOTS = []
    return settings.AESP_EXPORT_ROOT


@pytest.fixture
def frozen(curator_client):
    labelled_set(6, 4)
    response = curator_client.post("/api/dataset-versions/", {"name": "hb", "split_seed": 2, "test_ratio": 0.2,
                                                              "freeze": True}, format="json")
    assert response.status_code == 201, response.content
    return DatasetVersion.objects.get(pk=response.json()["id"])


@pytest.fixture
def finished_export(frozen, curator_user, django_capture_on_commit_callbacks):
    export, _ = services.export_create(version=frozen, format="humanbeauty", options={}, created_by=curator_user,
                                       enqueue=False)
    return services.export_run(export_id=export.pk)


def test_create_freeze_list_and_items(curator_client):
    labelled_set(6, 4)
    response = curator_client.post("/api/dataset-versions/", {"name": "hb"}, format="json")
    assert response.status_code == 201 and response.json()["state"] == "draft"
    pk = response.json()["id"]
    frozen = curator_client.post(f"/api/dataset-versions/{pk}/freeze/")
    assert frozen.status_code == 200 and frozen.json()["state"] == "frozen"
    assert frozen.json()["counts"]["total"] == 10 and "balance" in frozen.json()["counts"]
    assert curator_client.post(f"/api/dataset-versions/{pk}/freeze/").status_code == 409
    listing = curator_client.get("/api/dataset-versions/").json()
    assert [v["id"] for v in listing["results"]] == [pk] and "count" not in listing  # keyset, no COUNT(*)
    page = curator_client.get(f"/api/dataset-versions/{pk}/items/?page_size=4").json()
    assert len(page["results"]) == 4 and page["next"]
    rest = curator_client.get(page["next"]).json()
    seen = [r["id"] for r in page["results"] + rest["results"]]
    assert seen == sorted(seen) and len(seen) == 8
    tests = curator_client.get(f"/api/dataset-versions/{pk}/items/?split=test&page_size=100").json()["results"]
    assert all(r["split"] == "test" for r in tests)
    assert curator_client.get(f"/api/dataset-versions/{pk}/items/?split=dev").status_code == 400


@pytest.mark.parametrize("body, code", [
    ({"name": "x", "include_imported_labels": False}, "empty_selection"),
    ({"name": "x", "consensus_method": "median"}, None),
    ({"name": "x", "kind": "both"}, "unknown_kind"),
    ({"name": "x", "test_ratio": 1.0}, None),
    ({"name": "x", "campaigns": [999999]}, None),
])
def test_bad_version_requests_are_400_and_create_nothing(curator_client, body, code):
    response = curator_client.post("/api/dataset-versions/", body, format="json")
    assert response.status_code == 400, response.content
    if code:
        assert response.json()["code"] == code
    assert not DatasetVersion.objects.exists()


def test_freezing_an_empty_selection_is_a_400(curator_client):
    pk = curator_client.post("/api/dataset-versions/", {"name": "x"}, format="json").json()["id"]
    response = curator_client.post(f"/api/dataset-versions/{pk}/freeze/")
    assert response.status_code == 400 and response.json()["code"] == "empty_selection"


def test_export_requests(curator_client, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        first = curator_client.post("/api/exports/", {"version": frozen.pk, "format": "humanbeauty"}, format="json")
    assert first.status_code == 201 and first.json()["state"] == "pending" and len(callbacks) == 1
    again = curator_client.post("/api/exports/", {"version": frozen.pk, "format": "humanbeauty",
                                                  "options": {"images": "hardlink"}}, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    bad = curator_client.post("/api/exports/", {"version": frozen.pk, "format": "humanbeauty",
                                                "options": {"zip": True}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "unknown_option" and "zip" in bad.json()["detail"]
    assert (
        curator_client.post("/api/exports/", {"version": frozen.pk, "format": "csv"}, format="json").status_code == 400
    )
    assert Export.objects.count() == 1
    pending = curator_client.get(f"/api/exports/{first.json()['id']}/download/")
    assert pending.status_code == 409


def test_draft_export_is_409(curator_client):
    labelled_set(2, 0)
    pk = curator_client.post("/api/dataset-versions/", {"name": "x"}, format="json").json()["id"]
    response = curator_client.post("/api/exports/", {"version": pk, "format": "training_jsonl"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "not_frozen"


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_download_is_streamed_and_resumable_with_range(curator_client, finished_export):
    url = f"/api/exports/{finished_export.pk}/download/"
    detail = curator_client.get(f"/api/exports/{finished_export.pk}/").json()
    assert detail["state"] == "succeeded" and detail["download_url"].endswith(url)
    whole = curator_client.get(url)
    assert whole.status_code == 200 and whole.streaming and whole["Accept-Ranges"] == "bytes"
    data = _body(whole)
    assert len(data) == finished_export.archive_size == int(whole["Content-Length"])
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(archive_bytes(finished_export)).hexdigest()
    assert finished_export.archive_path == ""  # not written by the job: streamed from the export's files
    assert whole["Content-Type"] == "application/x-tar" and "attachment" in whole["Content-Disposition"]
    etag = whole["ETag"]
    # resume after 1000 bytes, guarded by If-Range
    part = curator_client.get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE=etag)
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert data[:1000] + _body(part) == data
    middle = curator_client.get(url, HTTP_RANGE="bytes=10-19")
    assert middle.status_code == 206 and _body(middle) == data[10:20] and middle["Content-Length"] == "10"
    suffix = curator_client.get(url, HTTP_RANGE="bytes=-100")
    assert _body(suffix) == data[-100:]
    # a stale If-Range gets the whole (changed) file; an impossible range is a 416
    stale = curator_client.get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE='"something-else"')
    assert stale.status_code == 200 and _body(stale) == data
    beyond = curator_client.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"
    head = curator_client.head(url)
    assert head.status_code == 200 and head["Content-Length"] == str(len(data))


def test_a_missing_or_changed_export_is_a_404(curator_client, finished_export):
    url = f"/api/exports/{finished_export.pk}/download/"
    manifest = Path(finished_export.path) / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"format"', b'"formaT"'))  # changed: the archive would differ
    assert curator_client.get(url).status_code == 404
    manifest.unlink()
    assert curator_client.get(url).status_code == 404
    manifest.write_bytes(original)
    assert curator_client.get(url).status_code == 200
    shutil.rmtree(finished_export.path)
    assert curator_client.get(url).status_code == 404


def test_annotators_and_anonymous_users_are_refused_everywhere(annotator_client, anonymous_client, finished_export):
    version = finished_export.version
    urls = ["/api/dataset-versions/", f"/api/dataset-versions/{version.pk}/",
            f"/api/dataset-versions/{version.pk}/items/", "/api/exports/", f"/api/exports/{finished_export.pk}/",
            f"/api/exports/{finished_export.pk}/download/"]
    for url in urls:
        assert annotator_client.get(url).status_code == 403, url
        assert anonymous_client.get(url).status_code in (401, 403), url
    assert annotator_client.post("/api/dataset-versions/", {"name": "x"}, format="json").status_code == 403
    assert annotator_client.post(f"/api/dataset-versions/{version.pk}/freeze/").status_code == 403
    assert annotator_client.post("/api/exports/", {"version": version.pk, "format": "humanbeauty"},
                                 format="json").status_code == 403
