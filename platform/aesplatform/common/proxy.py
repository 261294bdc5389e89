"""The client's address when the platform runs behind trusted proxies (production: nginx, see deploy/).

Each proxy appends the address it received the request from to X-Forwarded-For (nginx:
`$proxy_add_x_forwarded_for`), so with N trusted proxies in front the N-th entry from the right is the address
the outermost of them saw: the client. Entries further left were sent by the client and are not believed. This
is the rule of Werkzeug's ProxyFix(x_for=N). REMOTE_ADDR is set to that address before anything reads it, so the
login lockout (django-axes keys on username + address), logs and everything else see the client, not the proxy.

AESP_TRUSTED_PROXY_COUNT (default 0: no proxy, X-Forwarded-For is ignored and the middleware is not loaded). Too
low a count is safe (the address is a proxy's: the lockout is then per username); too high lets clients choose
their address, so count only proxies that append to the header.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed


def forwarded_client_address(forwarded_for: str, trusted_proxies: int) -> str | None:
    """The client's address from an X-Forwarded-For value, or None when the request did not pass through all
    `trusted_proxies` (fewer entries) or the entry is not an IP address."""
    entries = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if trusted_proxies < 1 or len(entries) < trusted_proxies:
        return None
    candidate = entries[-trusted_proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


class ForwardedClientAddressMiddleware:
    def __init__(self, get_response):
        self.trusted_proxies = settings.AESP_TRUSTED_PROXY_COUNT
        if self.trusted_proxies < 1:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        address = forwarded_client_address(request.META.get("HTTP_X_FORWARDED_FOR", ""), self.trusted_proxies)
        if address is not None:
            request.META["REMOTE_ADDR"] = address
        return self.get_response(request)
