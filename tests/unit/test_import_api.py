"""The catalog API and the import pages: role access for every endpoint, uploads through the API, the item
report's filter, and how stored files are served."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from aesplatform.catalog import services
from aesplatform.catalog.models import Image, ImportJob
from tests import factories
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_image(db):
    image = factories.ImageFactory(original_name='we"ird/..\\name<script>.jpg')
    default_storage.save(image.file.name, ContentFile(jpeg_bytes(seed=1)))
    default_storage.save(image.thumbnail.name, ContentFile(jpeg_bytes(32, 24, seed=1)))
    return image


def lease_to(image, annotator):
    """Make `image` one the annotator rates (annotators fetch only the files of images leased to them)."""
    from aesplatform.annotation import services as annotation_services
    from aesplatform.catalog.models import ImageStatus

    Image.objects.filter(pk=image.pk).update(status=ImageStatus.APPROVED)
    campaign = annotation_services.campaign_create(
        name="c", mode="expert", created_by=factories.curator(), image_ids=[image.pk], annotators=[annotator],
        state="active",
    )
    assert annotation_services.task_lease_next(campaign=campaign, annotator=annotator).task.image_id == image.pk


@pytest.fixture
def finished_job(curator_user, import_root):
    folder = import_root / "f"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(jpeg_bytes(seed=9))
    (folder / "bad.jpg").write_bytes(b"text")
    job = services.import_job_create(created_by=curator_user, kind="folder", path=str(folder), enqueue=False)
    return services.import_job_run(job_id=job.pk)


READ_ENDPOINTS = {
    "image list": ("/api/images/", "curator"),
    "image detail": ("/api/images/{image}/", "curator"),
    "image file": ("/api/images/{image}/file/", "annotator"),
    "image thumbnail": ("/api/images/{image}/thumbnail/", "annotator"),
    "import list": ("/api/imports/", "curator"),
    "import detail": ("/api/imports/{job}/", "curator"),
    "import items": ("/api/imports/{job}/items/", "curator"),
}


@pytest.mark.parametrize("endpoint", list(READ_ENDPOINTS))
def test_read_endpoints_by_role(endpoint, stored_image, finished_job, anonymous_client, annotator_client,
                                annotator_user, curator_client, admin_client_api):
    template, least_role = READ_ENDPOINTS[endpoint]
    lease_to(stored_image, annotator_user)
    url = template.format(image=stored_image.pk, job=finished_job.pk)
    assert anonymous_client.get(url).status_code in (401, 403)
    assert annotator_client.get(url).status_code == (200 if least_role == "annotator" else 403)
    assert curator_client.get(url).status_code == 200
    assert admin_client_api.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/api/imports/", "/api/imports/{job}/resume/"])
def test_starting_or_resuming_an_import_is_for_curators_and_admins(url, finished_job, anonymous_client,
                                                                   annotator_client, curator_client, admin_client_api):
    url = url.format(job=finished_job.pk)
    assert anonymous_client.post(url, {"kind": "upload"}).status_code in (401, 403)
    assert annotator_client.post(url, {"kind": "upload"}).status_code == 403
    # allowed through, and refused for what it says: no files / already finished
    assert curator_client.post(url, {"kind": "upload"}).status_code in (400, 409)
    assert admin_client_api.post(url, {"kind": "upload"}).status_code in (400, 409)


def test_an_api_upload_of_many_files_creates_a_job_with_an_item_per_file(curator_client, import_root):
    files = [SimpleUploadedFile(f"p{i}.jpg", jpeg_bytes(seed=i), content_type="image/jpeg") for i in range(3)]
    response = curator_client.post("/api/imports/", {"kind": "upload", "files": files, "source_name": "studio"},
                                   format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["state"], body["total"], body["source_name"]) == ("upload", "pending", 3, "studio")
    job = ImportJob.objects.get(pk=body["id"])
    assert job.total == 3  # stored, not only in the response
    assert sorted(job.items.values_list("name", flat=True)) == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_a_server_path_outside_the_roots_is_a_400_naming_the_problem(curator_client, import_root):
    response = curator_client.post("/api/imports/", {"kind": "folder", "path": "../../etc"}, format="json")
    assert response.status_code == 400
    assert "outside the allowed import folders" in response.json()["detail"]
    assert ImportJob.objects.count() == 0


def test_an_unknown_kind_is_a_400(curator_client, import_root):
    assert curator_client.post("/api/imports/", {"kind": "ftp"}, format="json").status_code == 400


def test_the_item_report_is_paginated_and_filterable_by_outcome(curator_client, finished_job):
    everything = curator_client.get(f"/api/imports/{finished_job.pk}/items/").json()
    assert everything["count"] == 2
    errors = curator_client.get(f"/api/imports/{finished_job.pk}/items/?outcome=error").json()
    assert [(i["name"], i["outcome"]) for i in errors["results"]] == [("bad.jpg", "error")]
    assert "not an image" in errors["results"][0]["message"]
    assert curator_client.get(f"/api/imports/{finished_job.pk}/items/?outcome=bogus").status_code == 400
    detail = curator_client.get(f"/api/imports/{finished_job.pk}/").json()
    assert (detail["imported_count"], detail["error_count"], detail["progress"]) == (1, 1, 1.0)


def test_images_are_filterable_by_status_source_and_format(curator_client, db):
    factories.ImageFactory(source="a", format="PNG")
    factories.ImageFactory(source="b", format="JPEG", status="approved")
    assert curator_client.get("/api/images/?source=a").json()["count"] == 1
    assert curator_client.get("/api/images/?image_format=png").json()["count"] == 1
    assert curator_client.get("/api/images/?status=approved").json()["count"] == 1
    ordered = curator_client.get("/api/images/?ordering=-id").json()["results"]
    assert ordered[0]["id"] > ordered[1]["id"]


def test_the_file_is_streamed_with_a_safe_type_nosniff_and_a_sanitised_name(
    annotator_client, annotator_user, stored_image
):
    lease_to(stored_image, annotator_user)
    response = annotator_client.get(f"/api/images/{stored_image.pk}/file/", HTTP_ACCEPT="image/jpeg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("inline; filename=") and disposition.endswith('.jpg"')
    assert not any(c in disposition.split("=", 1)[1].strip('"') for c in '"/\\<>')
    assert b"".join(response.streaming_content) == default_storage.open(stored_image.file.name).read()


def test_an_unknown_stored_format_is_served_as_octet_stream(curator_client, stored_image):
    Image.objects.filter(pk=stored_image.pk).update(format="HTML")
    response = curator_client.get(f"/api/images/{stored_image.pk}/file/")
    assert response["Content-Type"] == "application/octet-stream"


def test_a_missing_stored_file_is_a_404(curator_client, db):
    image = factories.ImageFactory()
    assert curator_client.get(f"/api/images/{image.pk}/thumbnail/").status_code == 404


# --- pages ---------------------------------------------------------------------------------------------------


@pytest.fixture
def page_client():
    def login(user=None):
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return login


@pytest.mark.parametrize("page", ["/imports/", "/imports/{job}/", "/imports/{job}/progress/"])
def test_import_pages_are_for_curators(page, page_client, finished_job, annotator_user, curator_user):
    url = page.format(job=finished_job.pk)
    assert page_client().get(url).status_code == 302  # to the login page
    assert page_client(annotator_user).get(url).status_code == 403
    response = page_client(curator_user).get(url)
    assert response.status_code == 200
    assert b"style=" not in response.content and b"onclick" not in response.content  # strict CSP markup


def test_the_detail_page_shows_the_report_and_a_finished_job_stops_polling(page_client, curator_user, finished_job):
    html = page_client(curator_user).get(f"/imports/{finished_job.pk}/?outcome=error").content.decode()
    assert "bad.jpg" in html and "ok.jpg" not in html
    assert "hx-trigger" not in html  # finished: no more polling
    ImportJob.objects.filter(pk=finished_job.pk).update(state="running")
    html = page_client(curator_user).get(f"/imports/{finished_job.pk}/progress/").content.decode()
    assert 'hx-trigger="every 1s"' in html


def test_the_server_path_form_starts_a_job_or_shows_the_error(
    page_client, curator_user, import_root, django_capture_on_commit_callbacks
):
    (import_root / "pics").mkdir()
    client = page_client(curator_user)
    refused = client.post("/imports/", {"kind": "folder", "path": "/etc"})
    assert refused.status_code == 400 and "outside the allowed import folders" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/imports/", {"kind": "folder", "path": "pics", "source_name": "pics"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert len(callbacks) == 1  # the worker task is queued once the job is committed
