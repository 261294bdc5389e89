"""Uploaded files are never served as something a browser would run: an "image" that is HTML, SVG or script is
refused at import whatever its name or declared type, and what is stored is served with the type of its decoded
format, nosniff, inline, under a sanitised name with that format's extension."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog import services
from aesplatform.catalog.models import Image, ImageStatus, ImportJob
from aesplatform.common.models import JobState
from tests import factories

pytestmark = pytest.mark.django_db

HTML = b"<!doctype html><html><body><script>window.__xss=1</script></body></html>\n"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
       b'onload="window.__xss=1"><script>window.__xss=1</script><rect width="10" height="10"/></svg>\n')
JS = b"window.__xss = 1; fetch('/api/me/');\n"


def png_with_html_tail() -> bytes:
    """A real PNG with an HTML document appended: it decodes as PNG, and sniffing browsers might call it HTML."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 30), (200, 120, 90)).save(buffer, "PNG")
    return buffer.getvalue() + HTML


@pytest.fixture
def uploaded(curator_user, settings):
    settings.AESP_IMPORT = {**settings.AESP_IMPORT, "THUMBNAIL_SIZE": 32}
    files = [
        SimpleUploadedFile("page.jpg", HTML, content_type="image/jpeg"),
        SimpleUploadedFile("page.html", HTML, content_type="text/html"),
        SimpleUploadedFile("vector.svg", SVG, content_type="image/svg+xml"),
        SimpleUploadedFile("vector.png", SVG, content_type="image/png"),
        SimpleUploadedFile("script.js", JS, content_type="application/javascript"),
        SimpleUploadedFile('"><img src=x onerror=alert(1)>.html', png_with_html_tail(), content_type="text/html"),
    ]
    client = Client()
    client.force_login(curator_user)
    response = client.post("/api/imports/", {"kind": "upload", "files": files, "source_name": "hostile"})
    assert response.status_code == 201, response.content
    return services.import_job_run(job_id=response.json()["id"])


def test_html_svg_and_script_uploads_are_refused_at_import_whatever_their_name_or_type(uploaded):
    outcomes = dict(uploaded.items.values_list("name", "outcome"))
    for name in ("page.jpg", "page.html", "vector.svg", "vector.png", "script.js"):
        assert outcomes[name] == "error", (name, outcomes[name])
    messages = " ".join(uploaded.items.filter(outcome="error").values_list("message", flat=True))
    assert "not an image" in messages
    assert Image.objects.count() == 1  # only the real PNG
    assert ImportJob.objects.get(pk=uploaded.pk).state == JobState.SUCCEEDED  # refusals are item errors, not a crash


def test_a_stored_image_is_served_as_its_decoded_format_never_as_the_uploaded_name_says(uploaded, curator_user):
    image = Image.objects.get()
    assert image.format == "PNG" and image.original_name.endswith(".html")
    client = Client()
    client.force_login(curator_user)
    response = client.get(f"/api/images/{image.pk}/file/", HTTP_ACCEPT="text/html,*/*")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    disposition = response["Content-Disposition"]
    match = re.fullmatch(r'inline; filename="([A-Za-z0-9._-]+)"', disposition)
    assert match, disposition
    assert match.group(1).endswith(".png") and "html" not in match.group(1).rsplit(".", 1)[1]
    thumb = client.get(f"/api/images/{image.pk}/thumbnail/")
    assert thumb["Content-Type"] == "image/jpeg" and thumb["X-Content-Type-Options"] == "nosniff"
    assert thumb["Content-Disposition"].startswith("inline; filename=") and thumb["Content-Disposition"].endswith(
        '.jpg"'
    )


def test_the_annotators_task_image_is_served_as_its_decoded_format_too(uploaded):
    image = Image.objects.get()
    Image.objects.filter(pk=image.pk).update(status=ImageStatus.APPROVED)
    annotator = factories.annotator()
    campaign = annotation_services.campaign_create(
        name="c", mode="expert", created_by=factories.curator(), image_ids=[image.pk], annotators=[annotator],
        state="active",
    )
    assignment = annotation_services.task_lease_next(campaign=campaign, annotator=annotator)
    client = Client()
    client.force_login(annotator)
    response = client.get(f"/api/assignments/{assignment.pk}/image/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_downloads_are_attachments_never_rendered(curator_user, db):
    campaign = factories.CampaignFactory(created_by=curator_user)
    client = Client()
    client.force_login(curator_user)
    response = client.get(f"/campaigns/{campaign.pk}/annotations.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
