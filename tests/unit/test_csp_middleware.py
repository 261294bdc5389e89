"""The CSP middleware builds the site-wide policy once; responses with their own policy still get theirs."""

from __future__ import annotations

from csp.constants import NONCE, SELF
from csp.utils import build_policy
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from aesplatform.common.csp import CSPMiddleware


def respond(response=None, **request_attributes):
    request = RequestFactory().get("/somewhere/")
    middleware = CSPMiddleware(lambda r: response or HttpResponse("ok"))
    middleware.process_request(request)
    for name, value in request_attributes.items():
        setattr(request, name, value)
    return middleware.process_response(request, response or HttpResponse("ok"))


def test_a_plain_response_gets_the_policy_django_csp_builds_from_the_settings():
    assert respond()["Content-Security-Policy"] == build_policy()
    assert "script-src 'self'" in respond()["Content-Security-Policy"]


def test_a_response_with_its_own_policy_or_exemption_is_left_to_django_csp():
    updated = HttpResponse("ok")
    updated._csp_update = {"img-src": ["https://images.example.org"]}
    assert "https://images.example.org" in respond(updated)["Content-Security-Policy"]
    exempt = HttpResponse("ok")
    exempt._csp_exempt = True
    assert "Content-Security-Policy" not in respond(exempt)


@override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": {"default-src": [SELF], "script-src": [SELF, NONCE]}})
def test_a_request_that_used_a_nonce_gets_it_in_its_header():
    assert "'nonce-abc123'" in respond(_csp_nonce="abc123")["Content-Security-Policy"]
    assert "nonce-" not in respond()["Content-Security-Policy"]


def test_a_changed_setting_changes_the_header():
    before = respond()["Content-Security-Policy"]
    with override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": {"default-src": [SELF], "img-src": [SELF, "https://cdn.example.org"]}}):
        assert "https://cdn.example.org" in respond()["Content-Security-Policy"]
    assert respond()["Content-Security-Policy"] == before
