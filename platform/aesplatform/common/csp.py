"""django-csp's middleware, with the site-wide policy built once instead of for every response.

django-csp builds the Content-Security-Policy header anew for each response (dataclasses.asdict deep-copies the
directives, then the string is joined): profiling the annotation API showed it as the most expensive middleware,
about a fifth of a small JSON request's CPU outside the view. The header only varies when a view asks for its own
policy (the csp decorators set `_csp_config`, `_csp_update`, `_csp_replace` on the response, `_csp_exempt` turns
it off), when a template used a nonce, or with settings this project does not use (report-only policy, excluded URL
prefixes): those responses go through django-csp unchanged. Every other response gets the same string, built by
django-csp's own `build_policy` and rebuilt when a test changes the setting.
"""

from __future__ import annotations

import http.client
from functools import cache

from csp.constants import HEADER
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# what django-csp's decorators and exemptions put on a response, and what a nonce leaves on the request
_RESPONSE_OVERRIDES = tuple(
    f"_csp_{name}{suffix}" for name in ("config", "update", "replace", "exempt") for suffix in ("", "_ro")
)
_DEBUG_EXEMPT_STATUSES = (http.client.INTERNAL_SERVER_ERROR, http.client.NOT_FOUND)


@cache
def _site_policy() -> str | None:
    """The policy of CONTENT_SECURITY_POLICY alone, or None when the settings need django-csp's per-response path."""
    policy = getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}
    if policy.get("EXCLUDE_URL_PREFIXES") or getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None):
        return None
    return build_policy() or None


@receiver(setting_changed)
def _forget_site_policy(*, setting, **kwargs):
    if setting.startswith("CONTENT_SECURITY_POLICY") or setting == "DEBUG":
        _site_policy.cache_clear()


class CSPMiddleware(DjangoCSPMiddleware):
    def process_response(self, request, response):
        header = _site_policy()
        if (
            header is None
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _RESPONSE_OVERRIDES)
            or (settings.DEBUG and response.status_code in _DEBUG_EXEMPT_STATUSES)
        ):
            return super().process_response(request, response)
        if HEADER not in response:
            response[HEADER] = header
        # as django-csp does: a nonce asked for after the header was written is an error, not a silent gap
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response
