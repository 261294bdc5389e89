"""annotator_ui pages: role access, navigation per role, empty and filled renders, CSP-friendly markup."""

from __future__ import annotations

import itertools
import re

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aesplatform.accounts.roles import Role
from annotator_ui.navigation import NAV_ITEMS, nav_keys_for
from tests import factories

pytestmark = pytest.mark.django_db

# (url name, role needed). Every page annotator_ui part 8 adds.
PAGES = [
    ("ui:home", None),
    ("ui:annotate", Role.ANNOTATOR),
    ("ui:my_work", Role.ANNOTATOR),
    ("ui:images", Role.CURATOR),
    ("ui:filter_runs", Role.CURATOR),
    ("ui:campaigns", Role.CURATOR),
    ("ui:datasets", Role.CURATOR),
    ("ui:models", Role.CURATOR),
]
USERS = {
    "annotator": factories.annotator,
    "curator": factories.curator,
    "admin": factories.admin,
    "none": lambda: factories.UserFactory(roles=[]),
}
# What each account may open (admin ⊇ curator ⊇ annotator; a user without a role only sees home).
ALLOWED = {
    "none": set(),
    "annotator": {Role.ANNOTATOR},
    "curator": {Role.ANNOTATOR, Role.CURATOR},
    "admin": {Role.ANNOTATOR, Role.CURATOR, Role.ADMIN},
}


def _login(client, who: str):
    user = USERS[who]()
    client.force_login(user)
    return user


@pytest.mark.parametrize("url_name,role", PAGES)
def test_anonymous_is_sent_to_login(client, url_name, role):
    url = reverse(url_name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize("who", list(USERS))
@pytest.mark.parametrize("url_name,role", PAGES)
def test_role_access(client, who, url_name, role):
    _login(client, who)
    response = client.get(reverse(url_name))
    expected = 200 if role is None or role in ALLOWED[who] else 403
    assert response.status_code == expected, (who, url_name, response.status_code)
    if expected == 403:
        assert b"You cannot open this page" in response.content  # our 403 page, inside the layout


@pytest.mark.parametrize("who", list(USERS))
def test_navigation_shows_exactly_the_items_of_the_role(client, who):
    _login(client, who)
    html = client.get(reverse("ui:home")).content.decode()
    shown = re.findall(r'data-testid="nav-([a-z-]+)"', html)
    expected = {
        "none": [],
        "annotator": ["annotate", "my-work"],
        "curator": ["annotate", "my-work", "images", "imports", "filtering", "campaigns", "datasets", "models"],
        "admin": [
            "annotate",
            "my-work",
            "images",
            "imports",
            "filtering",
            "campaigns",
            "datasets",
            "models",
            "admin",
            "api-docs",
        ],
    }[who]
    assert shown == expected
    assert shown == nav_keys_for(frozenset(ALLOWED[who]))


def test_every_nav_item_links_to_a_page_that_answers(client):
    _login(client, "admin")
    html = client.get(reverse("ui:home")).content.decode()
    links = dict(re.findall(r'href="([^"]+)" data-testid="nav-([a-z-]+)"', html))
    assert sorted(links.values()) == sorted(item.key for item in NAV_ITEMS)
    for href, key in links.items():
        if key == "imports" and not _imports_route_exists():
            continue  # checked by test_imports_nav_item_links_to_the_import_pages once that part is merged
        response = client.get(href)
        assert response.status_code == 200, (key, href, response.status_code)


def _imports_route_exists() -> bool:
    from django.urls import NoReverseMatch, Resolver404, resolve

    try:
        reverse("ui:imports")
        return True
    except NoReverseMatch:
        try:
            resolve("/api/imports/")
            return True
        except Resolver404:
            return False


def test_imports_nav_item_links_to_the_import_pages(client):
    """The "Imports" item links to the import pages, which answer."""
    _login(client, "curator")
    html = client.get(reverse("ui:home")).content.decode()
    href = re.search(r'href="([^"]+)" data-testid="nav-imports"', html).group(1)
    assert href == reverse("ui:imports")
    assert client.get(href).status_code == 200


def test_current_page_is_marked(client):
    _login(client, "curator")
    html = client.get(reverse("ui:campaigns")).content.decode()
    assert re.search(r'data-testid="nav-campaigns" id="nav-campaigns" aria-current="page"', html)
    assert html.count('aria-current="page"') == 1


def test_header_shows_user_role_and_a_post_logout_form(client):
    user = _login(client, "curator")
    html = client.get(reverse("ui:home")).content.decode()
    assert user.username in html
    assert re.search(r'data-testid="account-role"[^>]*>curator<', html)
    form = re.search(r'<form method="post" action="/logout/".*?</form>', html, re.S)
    assert form and "csrfmiddlewaretoken" in form.group(0)


# --- login / logout ---------------------------------------------------------------------------------------------


def test_login_page_renders_and_logs_in(client):
    user = factories.annotator()
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'autocomplete="current-password"' in response.content
    response = client.post(reverse("login"), {"username": user.username, "password": factories.TEST_PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("ui:home")
    assert client.get(reverse("ui:home")).status_code == 200


def test_login_with_a_wrong_password_says_so(client):
    user = factories.annotator()
    response = client.post(reverse("login"), {"username": user.username, "password": "wrong"})
    assert response.status_code == 200
    assert b'data-testid="login-error"' in response.content


def test_login_redirects_to_next(client):
    user = factories.curator()
    url = reverse("login") + "?next=" + reverse("ui:images")
    response = client.post(
        url, {"username": user.username, "password": factories.TEST_PASSWORD, "next": reverse("ui:images")}
    )
    assert response["Location"] == reverse("ui:images")


def test_logged_in_user_visiting_login_goes_home(client):
    _login(client, "annotator")
    response = client.get(reverse("login"))
    assert response.status_code == 302 and response["Location"] == reverse("ui:home")


def test_logout_needs_post(client):
    _login(client, "annotator")
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get(reverse("ui:home")).status_code == 302


# --- pages with an empty database and with data -----------------------------------------------------------------

EMPTY_TEXT = {
    "ui:annotate": b"No active campaign lists you",
    "ui:my_work": b"You have not rated an image yet",
    "ui:images": b"The catalog is empty",
    "ui:filter_runs": b"No filter run yet",
    "ui:campaigns": b"No campaign yet",
    "ui:datasets": b"No dataset version yet",
    "ui:models": b"No model is registered yet",
}


@pytest.mark.parametrize("url_name", list(EMPTY_TEXT))
def test_pages_render_with_an_empty_database(client, url_name):
    _login(client, "admin")
    response = client.get(reverse(url_name))
    assert response.status_code == 200
    assert EMPTY_TEXT[url_name] in response.content


def test_home_per_role_with_an_empty_database(client):
    _login(client, "annotator")
    html = client.get(reverse("ui:home")).content.decode()
    assert 'data-testid="home-campaigns"' in html
    assert 'data-testid="home-catalog"' not in html and 'data-testid="home-users"' not in html
    client.logout()
    _login(client, "curator")
    html = client.get(reverse("ui:home")).content.decode()
    assert 'data-testid="home-catalog"' in html and 'data-testid="home-imports"' in html
    assert 'data-testid="home-filter-runs"' in html and 'data-testid="home-users"' not in html
    client.logout()
    _login(client, "admin")
    html = client.get(reverse("ui:home")).content.decode()
    assert 'data-testid="home-users"' in html and 'data-testid="home-catalog"' in html


def test_user_without_role_sees_an_explanation(client):
    _login(client, "none")
    html = client.get(reverse("ui:home")).content.decode()
    assert 'data-testid="no-role"' in html


_WORLD_SEQ = itertools.count()


def _make_world():
    """A little of everything the list pages show."""
    from django.utils import timezone

    from aesplatform.annotation.models import Assignment, CampaignState
    from aesplatform.catalog.models import ImportJob
    from aesplatform.curation.models import FilterRun, ReviewBatch
    from aesplatform.datasets.models import DatasetVersion, Export
    from aesplatform.modeling.models import ModelVersion, TrainingJob

    curator = factories.curator()
    annotator = factories.annotator()
    for _ in range(3):
        i = next(_WORLD_SEQ)
        campaign = factories.CampaignFactory(state=CampaignState.ACTIVE, created_by=curator, name=f"Spring {i}")
        campaign.annotators.add(annotator)
        for _ in range(2):
            task = factories.TaskFactory(campaign=campaign)
        Assignment.objects.create(
            task=task, annotator=annotator, leased_until=timezone.now() + timezone.timedelta(hours=1)
        )
        job = ImportJob.objects.create(
            kind="folder", created_by=curator, source_name=f"src{i}", total=10, processed=10, imported_count=9
        )
        run = FilterRun.objects.create(name=f"run {i}", created_by=curator, total=10, processed=4)
        ReviewBatch.objects.create(run=run, number=1)
        version = DatasetVersion.objects.create(name="hb", version=i + 1, created_by=curator)
        Export.objects.create(version=version, format="humanbeauty", options_digest=f"{i:064x}", created_by=curator)
        training = TrainingJob.objects.create(
            dataset_version=version, preset="tiny-cpu", created_by=curator, total_steps=100, step=(10 * i) % 100
        )
        ModelVersion.objects.create(
            name=f"model {i}", checkpoint_path="/tmp/x", training_job=training, dataset_version=version
        )
        assert job.pk
    return curator, annotator


def _rate_everything(user):
    """`user` joins every campaign and submits an overall-only rating of each of its tasks."""
    from django.utils import timezone

    from aesplatform.annotation.models import Annotation, Assignment, Campaign

    for campaign in Campaign.objects.all():
        campaign.annotators.add(user)
        for task in campaign.tasks.exclude(assignments__annotator=user):
            assignment = Assignment.objects.create(
                task=task, annotator=user, state="submitted", leased_until=timezone.now() + timezone.timedelta(hours=1)
            )
            Annotation.objects.create(
                task=task, annotator=user, assignment=assignment, is_expert=False, comprehensive=0.7, time_spent_ms=4200
            )


@pytest.mark.parametrize("url_name", ["ui:home", *EMPTY_TEXT])
def test_pages_render_with_data_in_a_fixed_number_of_queries(client, url_name):
    """More rows do not mean more queries (no N+1), and no page needs more than 14 (the home page: the user's
    ratings per campaign are one grouped statement of their own, see views.campaign_counts_filled, and the
    curator's "Getting started" steps one more)."""
    admin = factories.admin()
    client.force_login(admin)
    counts = []
    for _ in range(2):
        _make_world()
        _rate_everything(admin)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse(url_name))
        assert response.status_code == 200
        assert EMPTY_TEXT.get(url_name, b"\x00") not in response.content
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 14, counts


def test_annotate_shows_progress_of_the_users_campaigns_only(client):
    curator, annotator = _make_world()
    factories.CampaignFactory(state="active", created_by=curator, name="Not mine")
    factories.CampaignFactory(state="draft", created_by=curator, name="Draft").annotators.add(annotator)
    client.force_login(annotator)
    html = client.get(reverse("ui:annotate")).content.decode()
    assert html.count('class="card campaign"') == 3
    assert "Not mine" not in html and "Draft" not in html
    assert '<progress max="2" value="0"' in html


# --- CSP-friendly markup ----------------------------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<[^>]+\sstyle\s*=|<style", re.I)


@pytest.mark.parametrize("url_name", ["login", *[name for name, _ in PAGES]])
def test_pages_have_no_inline_script_handler_or_style(client, url_name):
    _make_world()
    if url_name != "login":
        _login(client, "admin")
    html = client.get(reverse(url_name)).content.decode()
    assert not INLINE_SCRIPT.search(html)
    assert not INLINE_HANDLER.search(html)
    assert not INLINE_STYLE.search(html)
    assert "//cdn" not in html and "https://" not in html  # nothing is loaded from elsewhere


def test_static_files_ship_with_the_project():
    for path in (
        "vendor/htmx.min.js",
        "annotator_ui/css/app.css",
        "annotator_ui/js/app.js",
        "annotator_ui/img/favicon.svg",
    ):
        assert finders.find(path), path
    with open(finders.find("vendor/htmx.min.js"), encoding="utf-8") as fh:
        assert 'version:"2.' in fh.read()
