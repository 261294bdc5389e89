"""The URL conf enumerated: every route with its name, view and methods, and its parameters filled with sample ids.

Used by the permission matrix (tests/unit/test_permission_matrix.py), the statement-count test
(tests/unit/test_page_statement_counts.py) and bench/pages.py, so that a page added to the URL conf is checked and
measured without being listed anywhere.
"""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver

METHODS = ("get", "post", "put", "patch", "delete")
# A function view states its methods here (class-based views are read from the class).
FUNCTION_VIEW_METHODS = {"health": ["get"]}

# Which object fills the id of a route, by its leading path (longest prefix first).
OBJECT_OF_PREFIX = [
    ("/api/campaigns/", "campaign"),
    ("/api/assignments/", "assignment"),
    ("/api/annotations/", "annotation"),
    ("/api/images/", "image"),
    ("/api/imports/", "import_job"),
    ("/api/filter-runs/", "filter_run"),
    ("/api/review-batches/", "review_batch"),
    ("/api/dataset-versions/", "dataset_version"),
    ("/api/exports/", "export"),
    ("/api/training-jobs/", "training_job"),
    ("/api/model-versions/", "model_version"),
    ("/api/prescore-runs/", "prescore_run"),
    ("/imports/", "import_job"),
    ("/annotate/", "campaign"),
    ("/my-work/", "annotation"),
    ("/campaigns/", "campaign"),
    ("/filtering/batches/", "review_batch"),
    ("/filtering/", "filter_run"),
    ("/datasets/", "dataset_version"),
    ("/exports/", "export"),
    ("/models/jobs/", "training_job"),
    ("/models/", "model_version"),
    ("/images/", "image"),
    ("/jobs/", "import_job"),
]
OTHER_PARAMS = {"name": "loss.png", "kind": "import", "action": "cancel"}  # non-id route parameters


def walk(patterns=None, prefix="", namespace=""):
    """(route, name, callback) of every URL pattern, namespaced names ("ui:campaigns")."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + str(entry.pattern), (namespace + entry.name) if entry.name else None, entry.callback


def view_methods(name, callback) -> list[str]:
    actions = getattr(callback, "actions", None)  # a DRF viewset route: its method -> action map
    if actions:
        return sorted(m for m in actions if m in METHODS)
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return FUNCTION_VIEW_METHODS.get(name, ["?"])
    return [m for m in METHODS if m in view_class.http_method_names and hasattr(view_class, m)]


def fill(route: str, ids: dict) -> str:
    """The route with its parameters replaced by the sample ids (`ids`: object kind -> id)."""
    kind = next((k for prefix, k in OBJECT_OF_PREFIX if route.startswith(prefix)), None)

    def value(match):
        name = match.group(1)
        if name in OTHER_PARAMS:
            return OTHER_PARAMS[name]
        assert kind is not None, f"no object for the parameters of {route}: add its prefix to OBJECT_OF_PREFIX"
        return str(ids[kind])

    return re.sub(r"[<{](?:\w+:)?(\w+)[>}]", value, route)


# Routes read with GET that are no page to time: the admin, sign-out, the API schema (generated from the code,
# not the data), static files.
NOT_PAGES = ("/admin/", "/static/", "/media/")
NOT_PAGE_NAMES = {"logout", "api-schema", "api-docs", "login", "health"}


def get_routes() -> list[tuple[str, str]]:
    """(route, name) of every route answering GET that reads the data: the pages and the API's GETs."""
    found = []
    for route, name, callback in walk():
        if route.startswith(NOT_PAGES) or name in NOT_PAGE_NAMES or "(?" in route:
            continue
        if "get" in view_methods(name, callback):
            found.append((route, name))
    return found
