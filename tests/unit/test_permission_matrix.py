"""The permission matrix: every URL pattern and API operation, for every kind of user.

The operations are enumerated, not listed by hand: the API from the OpenAPI schema that drf-spectacular generates
(every path x method) plus the methods of every view under /api/, the pages from the URL patterns and the methods
their views implement. Each one must have an entry in API_MATRIX or PAGE_MATRIX below (its minimum role), and
every entry must still exist: a new URL without a decision, or a stale one, fails the test.

For each operation, with real objects behind the ids (each user gets the objects they may legitimately see: their
own lease and annotation, an image leased to them):
- every principal below the minimum is refused (API: 401/403; pages: anonymous users are sent to the login page,
  signed-in ones get a 403), and the database is exactly what it was (a fingerprint of every table);
- the minimum role and every role above it get through (not 401/403, no redirect to the login page, no 5xx).

Principals: anonymous < signed in without a role < annotator < curator < admin. Public: login, logout, health,
the API token exchange (a login), and static files. The Django admin guards itself (staff only) and is checked
apart. The object-level rules (no reading by guessing ids) are tested at the end, annotator A against annotator B.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState
from aesplatform.catalog.models import ImageStatus
from model_core.standard import DIMENSIONS
from tests import factories
from tests.support.scenes import jpeg_bytes, scene, stored_image
from tests.support.urls import METHODS, OTHER_PARAMS, fill, view_methods, walk

pytestmark = pytest.mark.django_db

ANONYMOUS, SIGNED_IN, ANNOTATOR, CURATOR, ADMIN = "anonymous", "signed-in", "annotator", "curator", "admin"
PRINCIPALS = [ANONYMOUS, SIGNED_IN, ANNOTATOR, CURATOR, ADMIN]  # weakest first
PUBLIC = ANONYMOUS  # the minimum "role" of what anyone may reach

# --- the matrix: (method, OpenAPI path) -> minimum principal -------------------------------------------------------

API_MATRIX: dict[tuple[str, str], str] = {
    ("post", "/api/auth/token/"): PUBLIC,  # the API's login: username + password -> token
    ("get", "/api/me/"): SIGNED_IN,
    ("get", "/api/users/"): CURATOR,
    ("post", "/api/users/"): ADMIN,
    # annotation
    ("get", "/api/campaigns/"): ANNOTATOR,
    ("post", "/api/campaigns/"): CURATOR,
    ("get", "/api/campaigns/{id}/"): ANNOTATOR,
    ("patch", "/api/campaigns/{id}/"): CURATOR,
    ("post", "/api/campaigns/{id}/next-task/"): ANNOTATOR,
    ("get", "/api/campaigns/{id}/stats/"): CURATOR,
    ("get", "/api/campaigns/{id}/consensus/"): CURATOR,
    ("post", "/api/campaigns/{id}/active-priorities/"): CURATOR,
    ("post", "/api/assignments/{id}/submit/"): ANNOTATOR,
    ("post", "/api/assignments/{id}/skip/"): ANNOTATOR,
    ("post", "/api/assignments/{id}/flag/"): ANNOTATOR,
    ("post", "/api/assignments/{id}/restore/"): ANNOTATOR,  # undo of a skip or flag: own assignments only
    ("get", "/api/assignments/{id}/image/"): ANNOTATOR,
    ("get", "/api/annotations/"): ANNOTATOR,
    ("get", "/api/annotations/{id}/"): ANNOTATOR,
    ("post", "/api/annotations/{id}/correct/"): ANNOTATOR,
    ("post", "/api/annotations/{id}/review/"): CURATOR,
    ("get", "/api/campaigns/{id}/review/"): CURATOR,
    # catalog
    ("get", "/api/images/"): CURATOR,
    ("get", "/api/images/{id}/"): CURATOR,
    ("get", "/api/images/{id}/file/"): ANNOTATOR,  # object level: only images leased to them (tests below)
    ("get", "/api/images/{id}/thumbnail/"): ANNOTATOR,
    ("get", "/api/imports/"): CURATOR,
    ("post", "/api/imports/"): CURATOR,
    ("get", "/api/imports/{id}/"): CURATOR,
    ("get", "/api/imports/{id}/items/"): CURATOR,
    ("post", "/api/imports/{id}/resume/"): CURATOR,
    ("post", "/api/imports/{id}/cancel/"): CURATOR,
    # curation
    ("get", "/api/filter-runs/"): CURATOR,
    ("post", "/api/filter-runs/"): CURATOR,
    ("get", "/api/filter-runs/defaults/"): CURATOR,
    ("get", "/api/filter-runs/{id}/"): CURATOR,
    ("patch", "/api/filter-runs/{id}/thresholds/"): CURATOR,
    ("post", "/api/filter-runs/{id}/resume/"): CURATOR,
    ("post", "/api/filter-runs/{id}/cancel/"): CURATOR,
    ("get", "/api/filter-runs/{id}/results/"): CURATOR,
    ("get", "/api/filter-runs/{id}/batches/"): CURATOR,
    ("get", "/api/review-batches/{id}/"): CURATOR,
    ("post", "/api/review-batches/{id}/decide/"): CURATOR,
    # datasets
    ("get", "/api/dataset-versions/"): CURATOR,
    ("post", "/api/dataset-versions/"): CURATOR,
    ("get", "/api/dataset-versions/{id}/"): CURATOR,
    ("post", "/api/dataset-versions/{id}/freeze/"): CURATOR,
    ("get", "/api/dataset-versions/{id}/items/"): CURATOR,
    ("get", "/api/exports/"): CURATOR,
    ("post", "/api/exports/"): CURATOR,
    ("get", "/api/exports/{id}/"): CURATOR,
    ("get", "/api/exports/{id}/download/"): CURATOR,
    ("post", "/api/exports/{id}/resume/"): CURATOR,
    ("post", "/api/exports/{id}/cancel/"): CURATOR,
    # modeling
    ("get", "/api/training-jobs/"): CURATOR,
    ("post", "/api/training-jobs/"): CURATOR,
    ("get", "/api/training-jobs/{id}/"): CURATOR,
    ("post", "/api/training-jobs/{id}/cancel/"): CURATOR,
    ("post", "/api/training-jobs/{id}/resume/"): CURATOR,
    ("get", "/api/model-versions/"): CURATOR,
    ("post", "/api/model-versions/"): CURATOR,
    ("get", "/api/model-versions/{id}/"): CURATOR,
    ("post", "/api/model-versions/{id}/promote/"): CURATOR,
    ("get", "/api/prescore-runs/"): CURATOR,
    ("post", "/api/prescore-runs/"): CURATOR,
    ("get", "/api/prescore-runs/{id}/"): CURATOR,
    ("post", "/api/prescore-runs/{id}/resume/"): CURATOR,
    ("post", "/api/prescore-runs/{id}/cancel/"): CURATOR,
    ("get", "/api/prescores/"): CURATOR,
}

# --- (method, URL name) -> minimum principal, for every other URL pattern (pages, schema, docs, health) ---------------

PAGE_MATRIX: dict[tuple[str, str], str] = {
    ("get", "health"): PUBLIC,
    ("get", "login"): PUBLIC,
    ("post", "login"): PUBLIC,
    ("put", "login"): PUBLIC,  # Django's form views answer PUT like POST
    ("post", "logout"): PUBLIC,
    ("get", "api-schema"): SIGNED_IN,  # SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]
    ("get", "api-docs"): SIGNED_IN,
    ("get", "ui:home"): SIGNED_IN,
    ("get", "ui:annotate"): ANNOTATOR,
    ("get", "ui:my_work"): ANNOTATOR,
    ("get", "ui:annotate_campaign"): ANNOTATOR,
    ("get", "ui:images"): CURATOR,
    ("get", "ui:filter_runs"): CURATOR,
    ("get", "ui:campaigns"): CURATOR,
    ("get", "ui:datasets"): CURATOR,
    ("get", "ui:models"): CURATOR,
    ("get", "ui:imports"): CURATOR,
    ("post", "ui:imports"): CURATOR,
    ("get", "ui:import_detail"): CURATOR,
    ("get", "ui:import_progress"): CURATOR,
    ("get", "ui:campaign_new"): CURATOR,
    ("post", "ui:campaign_new"): CURATOR,
    ("put", "ui:campaign_new"): CURATOR,
    ("get", "ui:campaign_detail"): CURATOR,
    ("post", "ui:campaign_state"): CURATOR,
    ("get", "ui:campaign_csv"): CURATOR,
    ("post", "ui:campaign_consensus_method"): CURATOR,
    ("get", "ui:filter-run-new"): CURATOR,
    ("post", "ui:filter-run-new"): CURATOR,
    ("get", "ui:filter-run"): CURATOR,
    ("post", "ui:filter-run-thresholds"): CURATOR,
    ("get", "ui:review-batch"): CURATOR,
    ("post", "ui:review-batch"): CURATOR,
    ("get", "ui:dataset_new"): CURATOR,
    ("post", "ui:dataset_new"): CURATOR,
    ("get", "ui:dataset_detail"): CURATOR,
    ("post", "ui:dataset_freeze"): CURATOR,
    ("post", "ui:dataset_export"): CURATOR,
    ("get", "ui:export_progress"): CURATOR,
    ("get", "ui:export_download"): CURATOR,
    ("get", "ui:training_job_new"): CURATOR,
    ("post", "ui:training_job_new"): CURATOR,
    ("get", "ui:training_job"): CURATOR,
    ("get", "ui:training_job_live"): CURATOR,
    ("post", "ui:training_job_cancel"): CURATOR,
    ("post", "ui:job_action"): CURATOR,
    ("get", "ui:model_detail"): CURATOR,
    ("get", "ui:model_plot"): CURATOR,
    ("post", "ui:model_promote"): CURATOR,
    ("get", "ui:model_compare"): CURATOR,
    ("get", "ui:prescores"): CURATOR,
    ("post", "ui:prescore_run_new"): CURATOR,
    ("get", "ui:review_stream"): CURATOR,
    ("post", "ui:review_stream"): CURATOR,
    ("get", "ui:my_work_edit"): ANNOTATOR,
    ("post", "ui:my_work_edit"): ANNOTATOR,
    # the image explorer: curators only (the detail page shows every annotator's labels side by side)
    ("get", "ui:image_detail"): CURATOR,
    ("get", "ui:image_map"): CURATOR,
    ("post", "ui:image_map_compute"): CURATOR,
    ("post", "ui:image_map_select"): CURATOR,
}

ADMIN_PUBLIC = {"admin:login", "admin:logout"}  # the Django admin's own sign-in (and sign-out) pages
# Allowed principals that may get a 404 on these (nothing behind the URL in the fixture: no archive, no plot file).
EXPECTED_404 = {("get", "/api/exports/{id}/download/"), ("get", "ui:export_download"), ("get", "ui:model_plot")}



# --- enumeration ---------------------------------------------------------------------------------------------------


def _openapi_path(route: str) -> str:
    return re.sub(r"<(?:\w+:)?\w+>", "{id}", route)


def _schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method, path) for path, item in schema["paths"].items() for method in item if method in METHODS}


def _url_operations():
    """(kind, method, key, route): kind is "api" (key: the OpenAPI path) or "page" (key: the URL name)."""
    ops = []
    for route, name, callback in walk():
        if route.startswith("/admin/"):
            continue  # the Django admin: staff only, its own login (test_the_django_admin_is_for_staff_only)
        api = route.startswith("/api/") and name not in ("api-schema", "api-docs")
        for method in view_methods(name, callback):
            ops.append(("api" if api else "page", method, _openapi_path(route) if api else name, route))
    return ops


def test_every_operation_has_an_entry_in_the_matrix_and_every_entry_exists():
    schema_ops = _schema_operations()
    url_ops = _url_operations()
    api_from_urls = {(m, key) for kind, m, key, _ in url_ops if kind == "api"}
    pages = {(m, key) for kind, m, key, _ in url_ops if kind == "page"}
    assert not [op for op in pages if op[1] is None], "a URL pattern without a name"
    # the schema and the URL patterns agree (nothing hidden from the schema, nothing documented that is not routed)
    assert api_from_urls == schema_ops, (sorted(api_from_urls - schema_ops), sorted(schema_ops - api_from_urls))
    missing_api = sorted(schema_ops - set(API_MATRIX))
    missing_pages = sorted(pages - set(PAGE_MATRIX))
    assert not missing_api and not missing_pages, f"add a minimum role for: {missing_api + missing_pages}"
    stale = sorted((set(API_MATRIX) - schema_ops) | (set(PAGE_MATRIX) - pages))
    assert not stale, f"matrix entries for operations that no longer exist: {stale}"
    assert len(schema_ops) > 50 and len(pages) > 40


def _declared_minimum(callback) -> str | None:
    """The minimum a view declares by itself (RoleRequiredMixin.required_role, a role permission class, or DRF's
    IsAuthenticated default), where it is one class attribute; None where it is decided per action or request."""
    from django.contrib.auth.mixins import LoginRequiredMixin
    from rest_framework.permissions import AllowAny, IsAuthenticated
    from rest_framework.views import APIView

    from aesplatform.accounts.permissions import RoleRequiredMixin

    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return None
    if issubclass(view_class, RoleRequiredMixin):
        return str(view_class.required_role)
    if issubclass(view_class, LoginRequiredMixin):
        return SIGNED_IN
    if issubclass(view_class, APIView) and view_class.get_permissions is APIView.get_permissions:
        levels = []
        for permission in view_class.permission_classes:
            role = getattr(permission, "role", None)
            levels.append(
                str(role) if role is not None else {IsAuthenticated: SIGNED_IN, AllowAny: ANONYMOUS}.get(permission)
            )
        if levels and None not in levels:
            return max(levels, key=PRINCIPALS.index)
    return None


def test_the_matrix_is_never_looser_than_what_a_view_declares():
    """The declared classes and the matrix agree: a page's entry is its required role; an API entry may be stricter
    than its view's permission classes (checks inside the method), never looser."""
    checked = 0
    for route, name, callback in walk():
        declared = _declared_minimum(callback)
        if declared is None or route.startswith("/admin/"):
            continue
        api = route.startswith("/api/") and name not in ("api-schema", "api-docs")
        for method in view_methods(name, callback):
            entry = API_MATRIX[(method, _openapi_path(route))] if api else PAGE_MATRIX[(method, name)]
            if api:
                assert PRINCIPALS.index(entry) >= PRINCIPALS.index(declared), (method, route, entry, declared)
            else:
                assert entry == declared, (method, route, entry, declared)
            checked += 1
    assert checked > 80


# --- a world of real objects ---------------------------------------------------------------------------------------


def _lease_and_submit(campaign, user) -> tuple[Assignment, Annotation]:
    """One submitted annotation and one live lease of `user` in `campaign`, through the services."""
    done = annotation_services.task_lease_next(campaign=campaign, annotator=user)
    annotation, _ = annotation_services.annotation_submit(
        assignment_id=done.id, annotator=user, scores={d.key: 0.5 for d in DIMENSIONS}, idempotency_key=uuid.uuid4()
    )
    live = annotation_services.task_lease_next(campaign=campaign, annotator=user, held=[done.id])
    assert live is not None and live.id != done.id
    return live, annotation


@pytest.fixture
def world(db):
    from aesplatform.catalog.models import ImportJob
    from aesplatform.curation.models import FilterRun, ReviewBatch
    from aesplatform.datasets.models import Export
    from aesplatform.modeling.models import ModelVersion, PrescoreRun, TrainingJob
    from tests.support.modeling import draft_version

    users = {
        SIGNED_IN: factories.UserFactory(),
        ANNOTATOR: factories.annotator(),
        CURATOR: factories.curator(),
        ADMIN: factories.admin(),
    }
    other = factories.annotator()  # annotator B, for the object-level checks
    images = [stored_image(jpeg_bytes(scene(i, 48, 40)), status=ImageStatus.APPROVED) for i in range(10)]
    campaign = annotation_services.campaign_create(
        name="matrix", mode="expert", created_by=users[CURATOR], image_ids=[i.pk for i in images], redundancy=5,
        annotators=[users[ANNOTATOR], users[CURATOR], users[ADMIN], other], state="active",
    )
    curator = users[CURATOR]
    version = draft_version(curator)
    model = ModelVersion.objects.create(name="m1", checkpoint_path="/nonexistent/m1")
    run = FilterRun.objects.create(name="run", created_by=curator)
    shared = {
        "campaign": campaign.pk,
        "import_job": ImportJob.objects.create(kind="folder", source_name="x", created_by=curator).pk,
        "filter_run": run.pk,
        "review_batch": ReviewBatch.objects.create(run=run, number=1).pk,
        "dataset_version": version.pk,
        "export": Export.objects.create(version=version, format="humanbeauty", options_digest="0" * 64,
                                        created_by=curator).pk,
        "training_job": TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator).pk,
        "model_version": model.pk,
        "prescore_run": PrescoreRun.objects.create(model_version=model, created_by=curator).pk,
    }
    ids = {ANONYMOUS: dict(shared, assignment=0, annotation=0, image=images[0].pk)}
    ids[SIGNED_IN] = dict(ids[ANONYMOUS])
    leases = {}
    for principal in (ANNOTATOR, CURATOR, ADMIN):
        live, annotation = _lease_and_submit(campaign, users[principal])
        leases[principal] = (live, annotation)
        ids[principal] = dict(shared, assignment=live.pk, annotation=annotation.pk, image=live.task.image_id)
    other_live, other_annotation = _lease_and_submit(campaign, other)
    tokens = {p: Token.objects.create(user=u).key for p, u in users.items()}
    return {
        "users": users, "other": other, "ids": ids, "tokens": tokens, "campaign": campaign, "images": images,
        "leases": leases, "other_lease": other_live, "other_annotation": other_annotation,
    }


# --- requests ------------------------------------------------------------------------------------------------------


def _client(world, principal, kind):
    """A client signed in as `principal`: API calls with the principal's token (the real authentication classes,
    the hot path's included), pages with a session."""
    if kind == "api":
        client = APIClient(raise_request_exception=False)  # a 500 is reported with the rest, not raised
        if principal != ANONYMOUS:
            client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][principal]}")
        return client
    client = Client(raise_request_exception=False)
    if principal != ANONYMOUS:
        client.force_login(world["users"][principal])
    return client


def _call(client, kind, method, url):
    if kind == "api":
        return client.generic(method.upper(), url, data=json.dumps({}), content_type="application/json")
    if method == "get":
        return client.get(url)
    return client.generic(method.upper(), url, data="", content_type="application/x-www-form-urlencoded")


def _tables() -> list[str]:
    names = {m._meta.db_table for m in apps.get_models(include_auto_created=True) if m._meta.managed}
    return sorted(names - {"django_session"})  # a session is not data


def database_fingerprint() -> dict[str, str]:
    """A digest of every row of every table (one query), to show that a refused request changed nothing."""
    qn = connection.ops.quote_name
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            return {t: str(cursor.execute(f"SELECT COUNT(*) FROM {qn(t)}").fetchone()[0]) for t in _tables()}
    sql = " UNION ALL ".join(
        f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {qn(t)} x" for t in _tables()
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(cursor.fetchall())


def _is_login_redirect(response) -> bool:
    return response.status_code in (301, 302) and response["Location"].startswith("/login/")


def test_the_permission_matrix(world):
    problems: list[str] = []
    refused = allowed = 0
    operations = sorted(_url_operations(), key=lambda op: (op[3], op[1]))
    for principal_index, principal in enumerate(PRINCIPALS):
        for kind, method, key, route in operations:
            matrix = API_MATRIX if kind == "api" else PAGE_MATRIX
            minimum = matrix[(method, key)]
            url = fill(route, world["ids"][principal])
            client = _client(world, principal, kind)  # signing in writes (last_login, sessions): before the snapshot
            label = f"{principal:9} {method.upper():5} {url}"
            if principal_index < PRINCIPALS.index(minimum):
                before = database_fingerprint()
                response = _call(client, kind, method, url)
                after = database_fingerprint()
                refused += 1
                if kind == "api" or key in ("api-schema", "api-docs"):
                    ok = response.status_code in (401, 403)
                elif principal == ANONYMOUS:
                    ok = _is_login_redirect(response)
                else:
                    ok = response.status_code == 403
                if not ok:
                    problems.append(f"{label}: not refused ({response.status_code}), needs {minimum}")
                changed = sorted(t for t in before if before[t] != after.get(t))
                if changed:
                    problems.append(f"{label}: refused but changed {changed}")
            else:
                response = _call(client, kind, method, url)
                allowed += 1
                status = response.status_code
                sent_to_login = minimum != PUBLIC and _is_login_redirect(response)  # logout ends on the login page
                if status in (401, 403) or status >= 500 or sent_to_login:
                    problems.append(f"{label}: refused or failed ({status}) though {minimum} may")
                elif status == 404 and (method, key) not in EXPECTED_404:
                    problems.append(f"{label}: 404 for an object this principal may see (fixture or view bug)")
    assert not problems, "\n".join(problems)
    assert refused > 150 and allowed > 150, (refused, allowed)


def test_the_django_admin_is_for_staff_only(world):
    for principal in (ANONYMOUS, SIGNED_IN, ANNOTATOR, CURATOR):
        response = _client(world, principal, "page").get("/admin/annotation/annotation/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), principal
    assert _client(world, ADMIN, "page").get("/admin/annotation/annotation/").status_code == 200


def test_every_route_refuses_anonymous_users_even_with_unknown_ids(client):
    """Ids that exist nowhere: the refusal comes before the lookup (nothing about existence leaks to anyone)."""
    for route, name, callback in walk():
        key = ("get", name)
        if route.startswith("/admin/") and ("(?" in route.replace("(?P", "") or name in ADMIN_PUBLIC):
            continue  # the admin's catch-all regexes, its own login page
        url = re.sub(r"[<{](?:\w+:)?(\w+)[>}]", lambda m: OTHER_PARAMS.get(m.group(1), "987654"), route)
        url = re.sub(r"\(\?P<\w+>[^)]*\)", "987654", url).replace("^", "").replace("$", "").replace("\\Z", "")
        for method in view_methods(name, callback) if not route.startswith("/admin/") else ["get"]:
            if PAGE_MATRIX.get((method, name)) == PUBLIC or API_MATRIX.get((method, _openapi_path(route))) == PUBLIC:
                continue
            response = client.generic(method.upper(), url)
            if response.status_code in (301, 302):
                assert response["Location"].startswith(("/login/", "/admin/login/")), (
                    method,
                    url,
                    response["Location"],
                )
            else:
                assert response.status_code in (401, 403), (method, url, response.status_code, key)


def test_the_public_routes_answer_anonymous_users(client, settings):
    assert client.get("/health/").status_code == 200
    assert client.get("/login/").status_code == 200
    assert client.post("/api/auth/token/", {"username": "nobody", "password": "x"}).status_code == 400


def test_static_files_are_served_without_a_login(settings):
    settings.WHITENOISE_USE_FINDERS = True  # the test profile has no collectstatic; production serves STATIC_ROOT
    settings.WHITENOISE_AUTOREFRESH = True
    response = Client().get("/static/annotator_ui/js/app.js")  # a new client: middleware built with these settings
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


def test_the_schema_and_swagger_ui_need_a_login(client, settings):
    assert settings.SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] == ["rest_framework.permissions.IsAuthenticated"]
    assert client.get("/api/schema/").status_code in (401, 403)
    assert client.get("/api/docs/").status_code in (401, 403)
    client.force_login(factories.UserFactory())
    assert client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").status_code == 200
    assert client.get("/api/docs/").status_code == 200


# --- object level: annotator A against annotator B (no reading by guessing ids) -------------------------------------


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _unchanged(request):
    """Run `request`; assert the database is what it was. Returns the response."""
    before = database_fingerprint()
    response = request()
    changed = sorted(t for t, digest in database_fingerprint().items() if before.get(t) != digest)
    assert not changed, f"a refused request changed {changed}"
    return response


def test_an_annotator_fetches_only_the_image_files_leased_to_them(world):
    a, b = world["users"][ANNOTATOR], world["other"]
    a_live, _ = world["leases"][ANNOTATOR]
    mine = a_live.task.image_id
    # an image leased to B only (in a campaign of B's), and one never leased to anyone
    b_image, never_leased = (stored_image(jpeg_bytes(scene(200 + i, 48, 40)), status=ImageStatus.APPROVED)
                             for i in range(2))
    b_campaign = annotation_services.campaign_create(
        name="b only", mode="expert", created_by=world["users"][CURATOR], image_ids=[b_image.pk], annotators=[b],
        state="active",
    )
    assert annotation_services.task_lease_next(campaign=b_campaign, annotator=b).task.image_id == b_image.pk
    only_b, never_leased = [b_image.pk], [never_leased.pk]
    for endpoint in ("file", "thumbnail"):
        assert _api(a).get(f"/api/images/{mine}/{endpoint}/").status_code == 200
        for image_id in (only_b[0], never_leased[0], 987654):
            # the same answer for an id that exists and one that does not: nothing confirms a guess
            response = _api(a).get(f"/api/images/{image_id}/{endpoint}/")
            assert response.status_code == 404, (endpoint, image_id, response.status_code)
        for staff in (world["users"][CURATOR], world["users"][ADMIN]):
            assert _api(staff).get(f"/api/images/{never_leased[0]}/{endpoint}/").status_code == 200
    # a submitted (past) task's image stays readable; taken off the campaign, the annotator loses them all
    submitted = Assignment.objects.filter(annotator=a, state=AssignmentState.SUBMITTED).first().task.image_id
    assert _api(a).get(f"/api/images/{submitted}/file/").status_code == 200
    world["campaign"].annotators.remove(a)
    assert _api(a).get(f"/api/images/{mine}/file/").status_code == 404
    assert _api(a).get(f"/api/images/{submitted}/thumbnail/").status_code == 404
    assert _api(a).get(f"/api/assignments/{a_live.pk}/image/").status_code == 404


def test_an_annotator_cannot_read_another_annotators_lease_image(world):
    a, b_lease = world["users"][ANNOTATOR], world["other_lease"]
    assert _api(world["other"]).get(f"/api/assignments/{b_lease.pk}/image/").status_code == 200
    assert _api(a).get(f"/api/assignments/{b_lease.pk}/image/").status_code == 404
    assert _api(a).get("/api/assignments/987654/image/").status_code == 404
    assert _api(world["users"][CURATOR]).get(f"/api/assignments/{b_lease.pk}/image/").status_code == 200


def test_an_annotator_cannot_submit_skip_or_flag_another_annotators_lease(world):
    a, b_lease = world["users"][ANNOTATOR], world["other_lease"]
    body = {"scores": {d.key: 0.5 for d in DIMENSIONS}, "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1}
    for action, data in (("submit", body), ("skip", {}), ("flag", {"reason": "x"}), ("restore", {})):
        response = _unchanged(lambda action=action, data=data: _api(a).post(
            f"/api/assignments/{b_lease.pk}/{action}/", data, format="json"))
        assert response.status_code in (403, 404), (action, response.status_code)
    b_lease.refresh_from_db()
    assert b_lease.state == AssignmentState.LEASED


def test_an_annotator_never_sees_another_annotators_annotations(world):
    a, b = world["users"][ANNOTATOR], world["other"]
    _, a_annotation = world["leases"][ANNOTATOR]
    b_annotation = world["other_annotation"]
    listed = _api(a).get("/api/annotations/").json()["results"]
    assert {row["id"] for row in listed} == {a_annotation.pk}
    campaign_filtered = _api(a).get(f"/api/annotations/?campaign={world['campaign'].pk}").json()["results"]
    assert {row["annotator"] for row in campaign_filtered} == {a.pk}
    assert _api(a).get(f"/api/annotations/?task={b_annotation.task_id}").json()["results"] == [] or \
        b_annotation.task_id == a_annotation.task_id
    assert _api(a).get(f"/api/annotations/?annotator={b.pk}").status_code == 403
    assert _api(a).get(f"/api/annotations/{b_annotation.pk}/").status_code == 404
    assert _api(a).get(f"/api/annotations/{a_annotation.pk}/").status_code == 200
    body = {"scores": {d.key: 0.9 for d in DIMENSIONS}, "idempotency_key": str(uuid.uuid4())}
    response = _unchanged(lambda: _api(a).post(f"/api/annotations/{b_annotation.pk}/correct/", body, format="json"))
    assert response.status_code == 404
    # curators read them all
    assert _api(world["users"][CURATOR]).get(f"/api/annotations/{b_annotation.pk}/").status_code == 200
    # the "My work" page lists the annotator's own ratings only
    client = Client()
    client.force_login(a)
    page = client.get("/my-work/")
    assert page.status_code == 200 and list(page.context["annotations"]) == [a_annotation]


def test_an_annotator_sees_only_the_active_campaigns_that_list_them(world):
    from aesplatform.annotation.models import Campaign, CampaignState

    a = world["users"][ANNOTATOR]
    theirs = world["campaign"]
    images = [stored_image(jpeg_bytes(scene(100 + i, 48, 40)), status=ImageStatus.APPROVED) for i in range(2)]
    elsewhere = annotation_services.campaign_create(
        name="elsewhere", mode="expert", created_by=world["users"][CURATOR], image_ids=[i.pk for i in images],
        annotators=[world["other"]], state="active",
    )
    listed = {row["id"] for row in _api(a).get("/api/campaigns/").json()["results"]}
    assert listed == {theirs.pk}
    assert _api(a).get(f"/api/campaigns/{elsewhere.pk}/").status_code == 404
    assert _api(a).get("/api/campaigns/987654/").status_code == 404
    response = _unchanged(lambda: _api(a).post(f"/api/campaigns/{elsewhere.pk}/next-task/", {}, format="json"))
    assert response.status_code in (403, 404)
    client = Client()
    client.force_login(a)
    assert client.get(f"/annotate/{elsewhere.pk}/").status_code == 404
    assert elsewhere.name not in client.get("/annotate/").content.decode()
    # what an annotator reads of their own campaign leaves out the staff list and the gold ratio
    body = _api(a).get(f"/api/campaigns/{theirs.pk}/").json()
    assert "annotators" not in body and "gold_ratio" not in body
    # a closed campaign disappears from the annotator's API view
    Campaign.objects.filter(pk=theirs.pk).update(state=CampaignState.CLOSED)
    assert _api(a).get(f"/api/campaigns/{theirs.pk}/").status_code == 404


def test_an_annotator_reaches_no_export_dataset_version_or_curator_page_by_id(world):
    a = world["users"][ANNOTATOR]
    ids = world["ids"][ANNOTATOR]
    for url in (
        f"/api/exports/{ids['export']}/",
        f"/api/exports/{ids['export']}/download/",
        "/api/exports/",
        f"/api/dataset-versions/{ids['dataset_version']}/",
        f"/api/dataset-versions/{ids['dataset_version']}/items/",
        f"/api/images/{ids['image']}/",
        f"/api/campaigns/{ids['campaign']}/stats/",
        f"/api/campaigns/{ids['campaign']}/consensus/",
        f"/api/model-versions/{ids['model_version']}/",
    ):
        assert _api(a).get(url).status_code == 403, url
    client = Client()
    client.force_login(a)
    for url in (f"/exports/{ids['export']}/download/", f"/datasets/{ids['dataset_version']}/",
                f"/campaigns/{ids['campaign']}/", f"/campaigns/{ids['campaign']}/annotations.csv", "/images/"):
        assert client.get(url).status_code == 403, url


def test_stored_files_are_not_served_from_a_media_url(world):
    """Image files reach users only through the checked API views: no route serves MEDIA_URL to anyone."""
    image = world["images"][0]
    for principal in (ANONYMOUS, ANNOTATOR, ADMIN):
        client = _client(world, principal, "page")
        for key in (image.file.name, image.thumbnail.name):
            response = client.get(f"/media/{key}")
            assert response.status_code == 404 or _is_login_redirect(response), (principal, key, response.status_code)
