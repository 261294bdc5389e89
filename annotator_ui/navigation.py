"""The navigation bar: which items each role sees, in order, and where they lead.

One list, read by the context processor (base.html renders it) and by the tests (they assert exactly these items
per role). A role sees the items of every role it implies (admin ⊇ curator ⊇ annotator).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from aesplatform.accounts.roles import Role


@dataclass(frozen=True)
class NavItem:
    key: str  # stable id: the element gets data-testid="nav-<key>"
    label: str
    url_name: str
    role: Role
    # url_names (without namespace) under which this item is shown as the current page
    active_for: tuple[str, ...] = ()
    # used when url_name does not resolve (a route another part adds); must be a real path
    fallback_path: str | None = None


NAV_ITEMS: tuple[NavItem, ...] = (
    NavItem("annotate", "Annotate", "ui:annotate", Role.ANNOTATOR, ("annotate",)),
    NavItem("my-work", "My work", "ui:my_work", Role.ANNOTATOR, ("my_work",)),
    NavItem("images", "Images", "ui:images", Role.CURATOR, ("images",)),
    # The import pages belong to the image-import part; until its route exists the API list is the way in.
    NavItem("imports", "Imports", "ui:imports", Role.CURATOR, ("imports", "import_detail", "import_new"), "/api/imports/"),
    NavItem("filtering", "Filtering", "ui:filter_runs", Role.CURATOR, ("filter_runs",)),
    NavItem("campaigns", "Campaigns", "ui:campaigns", Role.CURATOR, ("campaigns",)),
    NavItem("datasets", "Datasets", "ui:datasets", Role.CURATOR, ("datasets",)),
    NavItem("models", "Models", "ui:models", Role.CURATOR, ("models",)),
    NavItem("admin", "Admin", "admin:index", Role.ADMIN),
    NavItem("api-docs", "API docs", "api-docs", Role.ADMIN),
)


def nav_keys_for(roles) -> list[str]:
    """The keys of the items a holder of `roles` sees, in display order."""
    return [item.key for item in NAV_ITEMS if item.role in roles]


def _url(item: NavItem) -> str | None:
    try:
        return reverse(item.url_name)
    except NoReverseMatch:
        return item.fallback_path


def nav_for(roles, current_url_name: str | None = None) -> list[dict]:
    entries = []
    for item in NAV_ITEMS:
        if item.role not in roles:
            continue
        url = _url(item)
        if url is None:
            continue
        entries.append(
            {"key": item.key, "label": item.label, "url": url, "current": current_url_name in item.active_for}
        )
    return entries
