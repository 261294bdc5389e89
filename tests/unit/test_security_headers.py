"""Security headers on every kind of response: the Content-Security-Policy header (django-csp) with no inline script
anywhere, nosniff, no framing, a strict referrer policy; the pages themselves carry no inline script to need one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from tests import factories
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def parse_csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_strict_csp(response):
    assert "Content-Security-Policy" in response, (
        f"no CSP header on {response.status_code} {response.get('Content-Type')}"
    )
    csp = parse_csp(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.fixture
def admin_page_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def stored_image(db):
    image = factories.ImageFactory()
    default_storage.save(image.file.name, ContentFile(jpeg_bytes(seed=3)))
    default_storage.save(image.thumbnail.name, ContentFile(jpeg_bytes(32, 24, seed=3)))
    return image


@pytest.mark.parametrize("path", ["/login/", "/health/", "/api/me/", "/api/schema/", "/no-such-page/"])
def test_anonymous_responses_carry_the_strict_policy(path):
    response = Client().get(path)
    assert response.status_code in (200, 302, 401, 403, 404, 503)
    assert_strict_csp(response)


@pytest.mark.parametrize(
    "path",
    ["/", "/images/", "/campaigns/", "/datasets/", "/models/", "/filtering/", "/imports/", "/my-work/",
     "/api/me/", "/api/images/", "/api/campaigns/?page=999", "/admin/", "/admin/auth/user/", "/api/docs/"],
)
def test_signed_in_pages_api_admin_and_docs_carry_the_strict_policy(admin_page_client, path):
    response = admin_page_client.get(path)
    assert response.status_code in (200, 404), (path, response.status_code)
    assert_strict_csp(response)


def test_the_api_docs_page_has_no_inline_script_or_style_and_its_script_is_a_url(admin_page_client):
    response = admin_page_client.get("/api/docs/")
    html = response.content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert "<style" not in html and " style=" not in html
    init = admin_page_client.get("/api/docs/?script=")
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()
    assert_strict_csp(init)


def test_served_image_files_carry_the_policy_too(admin_page_client, stored_image):
    response = admin_page_client.get(f"/api/images/{stored_image.pk}/thumbnail/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert_strict_csp(response)


def template_text(path: Path) -> str:
    """A template's markup without its Django comments (which may well talk about <style> and <script>)."""
    text = re.sub(r"{% comment %}.*?{% endcomment %}", "", path.read_text(), flags=re.S)
    return re.sub(r"{#.*?#}", "", text)


def test_no_template_has_inline_script_event_handlers_or_style_attributes():
    """The policy has no 'unsafe-inline': an inline script, an on*= handler or a style= attribute in a template
    would silently not work. json_script data blocks (type="application/json") are not scripts and are allowed."""
    offenders = []
    for path in (REPO / "annotator_ui" / "templates").rglob("*.html"):
        text = template_text(path)
        for attrs, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", text, flags=re.S):
            if "src=" not in attrs and "application/json" not in attrs:
                offenders.append(f"{path.name}: inline <script>")
            if body.strip() and "src=" in attrs:
                offenders.append(f"{path.name}: <script src> with a body")
        if re.search(r"<[a-z][^>]*\son[a-z]+\s*=", text, flags=re.I):
            offenders.append(f"{path.name}: on*= event handler")
        if re.search(r"<[a-z][^>]*\sstyle\s*=", text, flags=re.I) or "<style" in text:
            offenders.append(f"{path.name}: inline style")
        if "javascript:" in text.lower():
            offenders.append(f"{path.name}: javascript: URL")
    assert offenders == []


def test_no_template_or_script_turns_off_escaping_or_writes_html_from_strings():
    """Autoescaping stays on everywhere; the static JS builds DOM nodes with textContent, never from HTML strings."""
    offenders = []
    for path in (REPO / "annotator_ui" / "templates").rglob("*.html"):
        text = template_text(path)
        for marker in ("|safe", "|safeseq", "{% autoescape off", "|escapejs"):
            if marker in text:
                offenders.append(f"{path.name}: {marker}")
    for path in (REPO / "annotator_ui" / "static" / "annotator_ui" / "js").rglob("*.js"):
        text = path.read_text()
        for marker in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            if marker in text:
                offenders.append(f"{path.name}: {marker}")
    assert offenders == []
