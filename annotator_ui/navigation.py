"""The navigation bar: which items each role sees, in order, and where they lead.

One list, read by the context processor (base.html renders it) and by the tests (they assert exactly these items
per role). A role sees the items of every role it implies (admin ⊇ curator ⊇ annotator).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from aesplatform.accounts.roles import Role


@dataclass(frozen=True)
class NavItem:
    key: str  # stable id: the element gets data-testid="nav-<key>"
    label: str
    url_name: str
    role: Role
    # url_names (without namespace) under which this item is shown as the current page
    active_for: tuple[str, ...] = ()


NAV_ITEMS: tuple[NavItem, ...] = (
    NavItem("annotate", "Annotate", "ui:annotate", Role.ANNOTATOR, ("annotate", "annotate_campaign")),
    NavItem("my-work", "My work", "ui:my_work", Role.ANNOTATOR, ("my_work", "my_work_edit")),
    NavItem("images", "Images", "ui:images", Role.CURATOR, ("images", "image_detail", "image_map")),
    NavItem("imports", "Imports", "ui:imports", Role.CURATOR, ("imports", "import_detail", "import_progress")),
    NavItem("filtering", "Filtering", "ui:filter_runs", Role.CURATOR,
            ("filter_runs", "filter-run-new", "filter-run", "review-batch")),
    NavItem("campaigns", "Campaigns", "ui:campaigns", Role.CURATOR,
            ("campaigns", "campaign_new", "campaign_detail", "review_stream")),
    NavItem("datasets", "Datasets", "ui:datasets", Role.CURATOR, ("datasets", "dataset_new", "dataset_detail")),
    NavItem("models", "Models", "ui:models", Role.CURATOR,
            ("models", "training_job_new", "training_job", "model_detail", "model_compare", "prescores",
             "prescore_run_new")),
    NavItem("admin", "Admin", "admin:index", Role.ADMIN),
    NavItem("api-docs", "API docs", "api-docs", Role.ADMIN),
)


def nav_keys_for(roles) -> list[str]:
    """The keys of the items a holder of `roles` sees, in display order."""
    return [item.key for item in NAV_ITEMS if item.role in roles]


def nav_for(roles, current_url_name: str | None = None) -> list[dict]:
    entries = []
    for item in NAV_ITEMS:
        if item.role not in roles:
            continue
        entries.append(
            {
                "key": item.key,
                "label": item.label,
                "url": reverse(item.url_name),
                "current": current_url_name in item.active_for,
            }
        )
    return entries
