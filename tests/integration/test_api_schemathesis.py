"""Schemathesis against the OpenAPI schema (issue 9, part 2): zero server errors, zero responses that violate it.

Every operation of drf-spectacular's schema is fuzzed in-process, through Django's WSGI handler, against the real
PostgreSQL test database, as an annotator, a curator and an admin (API tokens). Seeded rows (a campaign with tasks,
a lease and an annotation, a filter run with a review batch, an import, frozen and draft dataset versions with a
written export, a training job, a model, a pre-scoring run with a prescore) give path ids real targets: about half
of the generated ids are replaced by the seeded row's, and so are ids in request bodies (a dataset version to
export or train on, images for a campaign, the promoted model to pre-score with), so that creates can succeed.
Checks on every response: no 5xx, the body and the content type conform to the schema. Requests are valid and
invalid ones (positive and negative generation; the coverage phase adds boundary values and wrong types).

Bounded and reproducible: a fixed seed, derandomized, no example database, 10 examples per operation; nothing is
queued (the test's transaction never commits, so `on_commit` job starts never fire).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from django.core.cache import cache
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.support.api_schema import openapi_document, seed, wsgi_app

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MAX_EXAMPLES = 10
# Hypothesis' caches (no example database: "database" is "none" below) go to the run's throw-away var dir, not ./
set_hypothesis_home_dir(Path(os.environ["AESP_VAR_DIR"]) / "hypothesis")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _config(*, coverage: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 20261125,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # auth is the role's token; generated cookies/Authorization headers would only test the anonymous case
            "with-security-parameters": False,
        },
        "phases": {"coverage": {"enabled": coverage}, "stateful": {"enabled": False}},
    })


# The coverage phase (boundary values, wrong types, missing fields: deterministic, about as many requests again as
# the fuzzing) runs as the curator, who gets past the permission checks of almost every operation; the annotator and
# the admin get the fuzzing phase.
DOCUMENT = openapi_document()
schema_with_coverage = schemathesis.openapi.from_dict(DOCUMENT, config=_config(coverage=True))
schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config(coverage=False))

# The rows path ids aim at, filled per test by `seeded` (ids differ per test: sequences do not roll back).
TARGETS: dict[str, int] = {}

# First path segment after /api/ -> the seeded object it names.
PATH_TARGET = {
    "annotations": "annotation",
    "assignments": "assignment",
    "campaigns": "campaign",
    "dataset-versions": "dataset_version",
    "exports": "export",
    "filter-runs": "filter_run",
    "images": "image",
    "imports": "import_job",
    "model-versions": "model_version",
    "prescore-runs": "prescore_run",
    "review-batches": "review_batch",
    "training-jobs": "training_job",
}


def flatmap_path_parameters(context, path_parameters):
    """A valid (integer) id is the seeded row's or the drawn one; an invalid one (a negative case) stays as drawn."""
    target = TARGETS.get(PATH_TARGET.get(context.operation.path.split("/")[2], ""))
    if target is None or not path_parameters or type(path_parameters.get("id")) is not int:
        return st.just(path_parameters)
    return st.sampled_from([{**path_parameters, "id": target}, path_parameters])


# Request body fields that name rows -> the seeded ids (filled per test like TARGETS).
BODY_IDS: dict[str, object] = {}


def _with_real_ids(body: dict) -> dict:
    real = dict(body)
    for name, value in body.items():
        if name in BODY_IDS and type(value) is type(BODY_IDS[name]):
            real[name] = BODY_IDS[name]
    decisions = body.get("decisions")
    if isinstance(decisions, list):
        real["decisions"] = [
            {**d, "image": BODY_IDS["decision_image"]} if isinstance(d, dict) and type(d.get("image")) is int else d
            for d in decisions
        ]
    return real


def flatmap_body(context, body):
    """Ids in a valid-typed body field are the seeded rows' or the drawn ones, so that creates can succeed."""
    if not BODY_IDS or not isinstance(body, dict):
        return st.just(body)
    real = _with_real_ids(body)
    return st.just(body) if real == body else st.sampled_from([real, body])


for _schema in (schema_with_coverage, schema):
    _schema.hook(flatmap_path_parameters)
    _schema.hook(flatmap_body)


@pytest.fixture
def app():
    with wsgi_app() as handler:
        yield handler


@pytest.fixture
def role():
    return "curator"


@pytest.fixture
def seeded(role, settings, tmp_path):
    settings.AESP_EXPORT_ROOT = tmp_path / "exports"
    settings.AESP_EXPORT_ROOTS = []
    settings.AESP_TRAINING_ROOT = tmp_path / "training"
    cache.clear()  # the login throttle counts in the cache: each operation starts unthrottled
    world = seed(tmp_path)
    TARGETS.update(world["targets"][role])
    BODY_IDS.update(world["body"][role])
    yield world
    TARGETS.clear()
    BODY_IDS.clear()
    cache.clear()  # and leaves no throttle behind for the tests after it


def _call_and_validate(case, token, app):
    case.call_and_validate(app=app, headers={"Authorization": f"Token {token}"}, checks=CHECKS)


# The seeded rows are shared by an operation's examples on purpose: what one request changes, the next one sees.
FIXTURE_SHARING = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@schema_with_coverage.parametrize()
@FIXTURE_SHARING
def test_api_as_a_curator_conforms_to_its_schema_and_never_fails(case, role, seeded, app):
    _call_and_validate(case, seeded["tokens"][role], app)


@pytest.mark.parametrize("role", ["annotator", "admin"])
@schema.parametrize()
@FIXTURE_SHARING
def test_api_conforms_to_its_schema_and_never_fails(case, role, seeded, app):
    _call_and_validate(case, seeded["tokens"][role], app)
