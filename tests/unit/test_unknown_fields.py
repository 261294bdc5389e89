"""Create and update requests refuse fields they do not take (a 400 naming them) and change nothing."""

from __future__ import annotations

import pytest

from aesplatform.annotation import limits as annotation_limits
from aesplatform.common.serializers import StrictInputSerializer
from aesplatform.curation import limits as curation_limits
from aesplatform.modeling import limits as modeling_limits
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/campaigns/"),
        ("post", "/api/filter-runs/"),
        ("post", "/api/dataset-versions/"),
        ("post", "/api/exports/"),
        ("post", "/api/training-jobs/"),
        ("post", "/api/model-versions/"),
        ("post", "/api/prescore-runs/"),
        ("post", "/api/imports/"),
        ("post", "/api/users/"),
    ],
)
def test_a_create_request_with_an_unknown_field_is_a_400_naming_it(admin_client_api, method, url):
    from django.apps import apps

    counts = {m: m.objects.count() for m in apps.get_models()}
    r = getattr(admin_client_api, method)(url, {"colour": "red", "zz_top": 1}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["non_field_errors"][0].startswith("unknown fields: colour, zz_top (accepted: ")
    assert {m: m.objects.count() for m in apps.get_models()} == counts


def test_a_thresholds_patch_with_an_unknown_field_is_refused(curator_client):
    r = curator_client.patch("/api/filter-runs/999999/thresholds/", {"thresholds": {}, "treshold": 1}, format="json")
    assert r.status_code == 400 and r.json()["non_field_errors"][0].startswith("unknown fields: treshold")


def test_a_campaign_patch_with_a_setting_that_cannot_change_is_refused_and_changes_nothing(curator_client):
    from aesplatform.annotation import services
    from aesplatform.annotation.models import Campaign
    from aesplatform.catalog.models import ImageStatus

    image = factories.ImageFactory(status=ImageStatus.APPROVED)
    campaign = services.campaign_create(name="c", mode="overall", created_by=factories.curator(),
                                        image_ids=[image.id], redundancy=3)
    r = curator_client.patch(f"/api/campaigns/{campaign.id}/", {"redundancy": 5}, format="json")
    assert r.status_code == 400
    message = r.json()["non_field_errors"][0]
    assert message.startswith("unknown fields: redundancy (accepted: ") and "lease_seconds" in message
    assert Campaign.objects.get(pk=campaign.id).redundancy == 3


def test_the_unknown_field_message_is_short_for_many_fields():
    from rest_framework import serializers

    class Two(StrictInputSerializer):
        a = serializers.IntegerField(required=False)
        b = serializers.IntegerField(read_only=True)

    many = Two(data={f"k{i:03}": i for i in range(200)} | {"a": 1, "b": 2})
    assert not many.is_valid()
    assert many.errors["non_field_errors"] == ["unknown fields: b, k000, k001, k002, k003, k004, k005, k006, k007, "
                                               "k008 and 191 more (accepted: a)"]
    assert Two(data={"a": 1}).is_valid()
    assert Two(data={"a": 1, "csrfmiddlewaretoken": "x"}).is_valid()  # a form post's CSRF token is no data field


def test_the_limits_are_the_same_in_the_service_the_serializer_and_the_form():
    """One place per app: the API's serializer and the page's form take exactly what the service does."""
    from aesplatform.annotation.serializers import CampaignCreateSerializer, CampaignUpdateSerializer
    from aesplatform.curation.serializers import FilterRunCreateSerializer
    from aesplatform.modeling.api import PrescoreRunCreateSerializer
    from annotator_ui.views_campaigns import CampaignForm
    from annotator_ui.views_curation import FilterRunForm
    from annotator_ui.views_modeling import PrescoreRunForm

    def bounds(field):
        return field.min_value, field.max_value

    a = annotation_limits
    for fields in (CampaignCreateSerializer().fields, CampaignForm.base_fields):
        assert bounds(fields["redundancy"]) == (a.REDUNDANCY_MIN, a.REDUNDANCY_MAX)
        assert bounds(fields["gold_ratio"]) == (a.GOLD_RATIO_MIN, a.GOLD_RATIO_MAX)
        assert bounds(fields["lease_seconds"]) == (a.LEASE_SECONDS_MIN, a.LEASE_SECONDS_MAX)
    assert bounds(CampaignUpdateSerializer().fields["lease_seconds"]) == (a.LEASE_SECONDS_MIN, a.LEASE_SECONDS_MAX)
    c = curation_limits
    for fields in (FilterRunCreateSerializer().fields, FilterRunForm.base_fields):
        assert bounds(fields["review_batch_size"]) == (c.REVIEW_BATCH_SIZE_MIN, c.REVIEW_BATCH_SIZE_MAX)
    assert bounds(FilterRunCreateSerializer().fields["batch_size"]) == (c.BATCH_SIZE_MIN, c.BATCH_SIZE_MAX)
    m = modeling_limits
    for fields in (PrescoreRunCreateSerializer().fields, PrescoreRunForm.base_fields):
        assert bounds(fields["max_tiles"]) == (m.MAX_TILES_MIN, m.MAX_TILES_MAX)
        assert bounds(fields["batch_size"]) == (m.BATCH_SIZE_MIN, m.BATCH_SIZE_MAX)


def test_the_prescoring_service_refuses_what_its_limits_refuse(curator_user):
    from aesplatform.common.exceptions import ServiceError
    from aesplatform.modeling import services
    from aesplatform.modeling.models import ModelVersion, PrescoreRun

    version = ModelVersion.objects.create(name="v", checkpoint_path="/nowhere")
    m = modeling_limits
    for wrong in ({"max_tiles": m.MAX_TILES_MAX + 1}, {"max_tiles": m.MAX_TILES_MIN - 1},
                  {"batch_size": m.BATCH_SIZE_MAX + 1}, {"batch_size": m.BATCH_SIZE_MIN - 1}):
        with pytest.raises(ServiceError) as refused:
            services.prescore_run_create(created_by=curator_user, model_version=version, enqueue=False, **wrong)
        assert f"between {m.MAX_TILES_MIN if 'max_tiles' in wrong else m.BATCH_SIZE_MIN} and" in refused.value.message
    assert not PrescoreRun.objects.exists()
