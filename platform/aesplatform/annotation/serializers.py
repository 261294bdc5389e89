"""API shapes of the annotation app. Input serializers only check types; the services check the rules."""

from __future__ import annotations

import uuid

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aesplatform.common.serializers import StrictInputSerializer
from model_core.standard import DIMENSIONS, LEVEL_CENTRES, LEVEL_UPPER_BOUNDS, LEVELS

from . import limits
from .consensus import DEFAULT_METHOD as DEFAULT_CONSENSUS_METHOD
from .models import (
    Annotation,
    AnnotationReview,
    Campaign,
    CampaignMode,
    CampaignState,
    Consensus,
    ConsensusMethod,
    ReviewState,
    TaskOrder,
)
from .selectors import REVIEW_COUNT_CAP, REVIEW_ORDERS, REVIEW_STATUSES
from .services import expected_dimensions

_MISSING = object()

SCORE_FIELDS = {d.key: serializers.FloatField(required=False, allow_null=True, help_text=d.name) for d in DIMENSIONS}


class CampaignSerializer(serializers.ModelSerializer):
    annotators = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    dimensions = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "mode", "state", "redundancy", "gold_ratio", "show_prescores", "instructions",
            "task_order", "lease_seconds", "consensus_method", "annotators", "dimensions", "created_by", "created_at",
        ]
        read_only_fields = fields

    def get_dimensions(self, campaign) -> list[str]:
        return [d.key for d in expected_dimensions(campaign.mode)]


class AnnotatorCampaignSerializer(CampaignSerializer):
    """What an annotator sees of a campaign: no gold ratio, no staff list."""

    class Meta(CampaignSerializer.Meta):
        fields = ["id", "name", "mode", "state", "redundancy", "show_prescores", "instructions", "lease_seconds",
                  "dimensions"]
        read_only_fields = fields


class CampaignForRoleSerializer(serializers.Serializer):
    """Schema only: reading a campaign gives curators a Campaign and annotators an AnnotatorCampaign (fewer fields)."""


class _CampaignForRoleSchema(OpenApiSerializerExtension):
    target_class = CampaignForRoleSerializer

    def get_name(self, auto_schema=None, direction=None):
        return "CampaignForRole"

    def map_serializer(self, auto_schema, direction):
        # anyOf, not oneOf: a curator's campaign is also a valid AnnotatorCampaign (a subset of its fields).
        return {
            "anyOf": [auto_schema.resolve_serializer(s, direction).ref
                      for s in (CampaignSerializer, AnnotatorCampaignSerializer)],
            "description": "Curators get every field (Campaign); annotators get AnnotatorCampaign.",
        }


class CampaignCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=limits.CAMPAIGN_NAME_MAX_LENGTH)
    mode = serializers.ChoiceField(choices=CampaignMode.choices)
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False,
                                      max_length=limits.CAMPAIGN_IMAGES_MAX)
    redundancy = serializers.IntegerField(min_value=limits.REDUNDANCY_MIN, max_value=limits.REDUNDANCY_MAX,
                                          default=limits.REDUNDANCY_DEFAULT)
    gold_ratio = serializers.FloatField(min_value=limits.GOLD_RATIO_MIN, max_value=limits.GOLD_RATIO_MAX,
                                        default=limits.GOLD_RATIO_DEFAULT)
    show_prescores = serializers.BooleanField(default=False)
    instructions = serializers.CharField(allow_blank=True, default="")
    annotators = serializers.ListField(child=serializers.IntegerField(min_value=1), default=list)
    task_order = serializers.ChoiceField(choices=TaskOrder.choices, default=TaskOrder.RANDOM)
    lease_seconds = serializers.IntegerField(min_value=limits.LEASE_SECONDS_MIN, max_value=limits.LEASE_SECONDS_MAX,
                                             default=limits.LEASE_SECONDS_DEFAULT)
    state = serializers.ChoiceField(choices=CampaignState.choices, default=CampaignState.DRAFT,
                                    help_text="draft or active")
    consensus_method = serializers.ChoiceField(choices=ConsensusMethod.choices, default=DEFAULT_CONSENSUS_METHOD,
                                               help_text="How the ratings become one score per image")


class CampaignUpdateSerializer(StrictInputSerializer):
    """What can change on a campaign (its mode, redundancy, gold ratio, task order and images cannot)."""

    name = serializers.CharField(max_length=limits.CAMPAIGN_NAME_MAX_LENGTH, required=False)
    instructions = serializers.CharField(allow_blank=True, required=False)
    show_prescores = serializers.BooleanField(required=False)
    lease_seconds = serializers.IntegerField(min_value=limits.LEASE_SECONDS_MIN, max_value=limits.LEASE_SECONDS_MAX,
                                             required=False)
    state = serializers.ChoiceField(choices=CampaignState.choices, required=False)
    annotators = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    consensus_method = serializers.ChoiceField(
        choices=ConsensusMethod.choices, required=False,
        help_text="Changing it recomputes the campaign's consensus (queued; the annotations never change)",
    )


class NextTaskRequestSerializer(serializers.Serializer):
    held = serializers.ListField(
        child=serializers.IntegerField(min_value=1), default=list, max_length=limits.HELD_MAX,
        help_text="Ids of your assignments the client already shows or preloads (a reload sends none and resumes).",
    )

    @staticmethod
    def accept(data) -> dict | None:
        """The validated data of a plain, valid JSON body, without building the serializer's fields; None for
        anything else (the caller then runs the serializer, which gives the result or the errors)."""
        if type(data) is not dict:
            return None
        held = data.get("held", _MISSING)
        if held is _MISSING:
            return {"held": []}
        if type(held) is list and len(held) <= limits.HELD_MAX and all(type(h) is int and h >= 1 for h in held):
            return {"held": list(held)}
        return None


class PrescoreSerializer(serializers.Serializer):
    metavoter_score = serializers.FloatField()
    scores = serializers.DictField(child=serializers.FloatField(allow_null=True))


class AssignmentOutSerializer(serializers.Serializer):
    """A leased task. Gold images are not marked: they are mixed in unannounced."""

    id = serializers.IntegerField(help_text="The assignment (lease) id: submit, skip and flag take it.")
    task_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    mode = serializers.CharField()
    dimensions = serializers.ListField(child=serializers.CharField())
    image_url = serializers.CharField()
    image_width = serializers.IntegerField()
    image_height = serializers.IntegerField()
    leased_until = serializers.DateTimeField()
    prescore = PrescoreSerializer(allow_null=True, help_text="Only when the campaign shows pre-scores.")

    @staticmethod
    def build(assignment, *, prescore=None) -> dict:
        task = assignment.task
        campaign = task.campaign
        return {
            "id": assignment.id,
            "task_id": task.id,
            "campaign_id": campaign.id,
            "mode": campaign.mode,
            "dimensions": [d.key for d in expected_dimensions(campaign.mode)],
            "image_url": reverse("api-assignment-image", args=[assignment.id]),
            "image_width": task.image.width,
            "image_height": task.image.height,
            "leased_until": assignment.leased_until,
            "prescore": prescore,
        }


class SubmitSerializer(serializers.Serializer):
    scores = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        help_text="dimension key -> score in [0, 1]; exactly the campaign mode's dimensions "
        f"({', '.join(d.key for d in DIMENSIONS)} for expert, the last one only for overall).",
    )
    idempotency_key = serializers.UUIDField(help_text="Generated by the client once per task; a retry sends the same.")
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=limits.TIME_SPENT_MS_MAX, default=0)
    ui_version = serializers.CharField(max_length=limits.UI_VERSION_MAX_LENGTH, allow_blank=True, default="")

    @staticmethod
    def accept(data) -> dict | None:
        """The validated data of a plain, valid JSON body (what is_valid() gives for it), without building the
        serializer's fields; None for anything else: the caller then runs the serializer (same result, or its errors).
        Narrower than the fields on purpose (only ints for time_spent_ms, numbers or null as scores, printable ASCII
        without surrounding blanks as ui_version): every other input takes the serializer's path."""
        if type(data) is not dict:
            return None
        scores, key = data.get("scores"), data.get("idempotency_key")
        if type(scores) is not dict or type(key) is not str:
            return None
        for name, value in scores.items():
            if type(name) is not str or not (value is None or type(value) is float or type(value) is int):
                return None
        try:
            key = uuid.UUID(hex=key)
        except ValueError:
            return None
        spent = data.get("time_spent_ms", 0)
        if type(spent) is not int or not 0 <= spent <= limits.TIME_SPENT_MS_MAX:
            return None
        ui_version = data.get("ui_version", "")
        if type(ui_version) is not str or len(ui_version) > limits.UI_VERSION_MAX_LENGTH or not (
            ui_version.isascii() and ui_version.isprintable() and ui_version == ui_version.strip()
        ):
            return None
        return {"scores": dict(scores), "idempotency_key": key, "time_spent_ms": spent, "ui_version": ui_version}


def validated(serializer_class, data) -> dict:
    """serializer_class(data=data) validated (a 400 with its errors when invalid), through its accept() first."""
    found = serializer_class.accept(data)
    if found is not None:
        return found
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class FlagSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, allow_blank=True, default="")


class AssignmentStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()


class AssignmentRestoredSerializer(AssignmentStateSerializer):
    leased_until = serializers.DateTimeField()


class AnnotationSerializer(serializers.ModelSerializer):
    scores = serializers.SerializerMethodField()
    campaign_id = serializers.IntegerField(source="task.campaign_id", read_only=True)
    image_id = serializers.IntegerField(source="task.image_id", read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "id", "task", "campaign_id", "image_id", "annotator", "assignment", "is_expert", "supersedes",
            "idempotency_key", "time_spent_ms", "ui_version", "created_at", "scores",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_scores(self, annotation) -> dict:
        return {k: v for k, v in annotation.scores_dict().items() if v is not None}


class ConsensusSerializer(serializers.ModelSerializer):
    dimension_key = serializers.SerializerMethodField()

    class Meta:
        model = Consensus
        fields = [
            "image", "dimension", "dimension_key", "method", "score", "count", "std", "ci_low", "ci_high",
            "rejected_annotators", "updated_at",
        ]
        read_only_fields = fields

    def get_dimension_key(self, row) -> str:
        return DIMENSIONS[row.dimension].key


class DimensionStatsSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    krippendorff_alpha = serializers.FloatField(allow_null=True)
    icc = serializers.FloatField(allow_null=True, help_text="ICC(1,1), one-way random effects")
    items = serializers.IntegerField()
    annotations = serializers.IntegerField()
    histogram = serializers.ListField(child=serializers.IntegerField(), help_text="10 bins over [0, 1]")


class AnnotatorRowSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    submitted = serializers.IntegerField()
    skipped = serializers.IntegerField()
    flagged = serializers.IntegerField()
    median_time_ms = serializers.FloatField(allow_null=True)
    loo_correlation = serializers.FloatField(allow_null=True)
    gold_count = serializers.IntegerField()
    gold_mae = serializers.FloatField(allow_null=True)
    gold_level_accuracy = serializers.FloatField(allow_null=True)
    rejected_dimensions = serializers.ListField(child=serializers.CharField())


class ProgressSerializer(serializers.Serializer):
    tasks = serializers.IntegerField()
    done = serializers.IntegerField()
    gold = serializers.IntegerField()
    submitted = serializers.IntegerField()
    live_leases = serializers.IntegerField()
    skipped = serializers.IntegerField()
    flagged = serializers.IntegerField()
    annotations_needed = serializers.IntegerField()
    percent = serializers.FloatField()


class ThroughputSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    annotations = serializers.IntegerField()


class CampaignStatsSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(help_text="When these figures were computed (by the quality update that "
                                                      "follows submits): they are exact as of then.")
    progress = ProgressSerializer()
    dimensions = DimensionStatsSerializer(many=True)
    annotators = AnnotatorRowSerializer(many=True)
    throughput = ThroughputSerializer(many=True)


LEVELS_INFO = [
    {"level": name, "centre": centre, "upper": (LEVEL_UPPER_BOUNDS + (1.0,))[i]}
    for i, (name, centre) in enumerate(zip(LEVELS, LEVEL_CENTRES))
]


# --- review and correction (issue 17) -------------------------------------------------------------------------


class CorrectSerializer(SubmitSerializer):
    reason = serializers.CharField(max_length=limits.REVIEW_REASON_MAX_LENGTH, allow_blank=True, default="",
                                   help_text="Why the rating changes (optional for your own rating).")


class ReviewInSerializer(StrictInputSerializer):
    state = serializers.ChoiceField(choices=[ReviewState.ACCEPTED, ReviewState.REJECTED, ReviewState.CORRECTED])
    reason = serializers.CharField(
        max_length=limits.REVIEW_REASON_MAX_LENGTH, allow_blank=True, default="",
        help_text="Required to reject or correct.",
    )
    scores = serializers.DictField(
        child=serializers.JSONField(allow_null=True), required=False,
        help_text="corrected only: dimension key -> score in [0, 1], the campaign mode's dimensions.",
    )
    idempotency_key = serializers.UUIDField(required=False, help_text="corrected only: a retry sends the same.")

    def validate(self, attrs):
        if attrs["state"] == ReviewState.CORRECTED:
            missing = [k for k in ("scores", "idempotency_key") if k not in attrs]
            if missing:
                raise serializers.ValidationError({k: ["a correction needs this field"] for k in missing})
        elif "scores" in attrs or "idempotency_key" in attrs:
            raise serializers.ValidationError("scores and idempotency_key go with state \"corrected\" only")
        return attrs


class ReviewSerializer(serializers.ModelSerializer):
    changed = serializers.BooleanField(read_only=True, default=True,
                                       help_text="False when the same verdict was already stored.")

    class Meta:
        model = AnnotationReview
        fields = ["annotation", "version", "state", "reason", "reviewed_by", "reviewed_at", "changed"]
        read_only_fields = fields


class ReviewQueueQuerySerializer(StrictInputSerializer):
    annotator = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=REVIEW_STATUSES, default="unreviewed")
    flagged = serializers.BooleanField(default=False)
    gold_failed = serializers.BooleanField(default=False)
    order = serializers.ChoiceField(choices=REVIEW_ORDERS, default="submitted")
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class ReviewEntrySerializer(serializers.Serializer):
    annotation_id = serializers.IntegerField(help_text="The rating's current version (review this id).")
    original_id = serializers.IntegerField()
    task_id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    annotator_id = serializers.IntegerField()
    status = serializers.CharField(help_text="unreviewed, accepted, corrected or rejected")
    is_gold = serializers.BooleanField()
    gold_failed = serializers.BooleanField()
    flagged = serializers.BooleanField()
    deviation = serializers.FloatField(allow_null=True, help_text="Largest |score - consensus|; null: no consensus.")
    scores = serializers.DictField(child=serializers.FloatField(allow_null=True))
    consensus = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_consensus(self, entry) -> dict:
        return {key: row.score for key, row in entry.consensus.items()}


class ReviewQueueSerializer(serializers.Serializer):
    count = serializers.IntegerField(
        allow_null=True, help_text=f"How many ratings the filters keep; null when more than {REVIEW_COUNT_CAP} "
        "(see count_capped): the queue is counted only that far.")
    count_capped = serializers.BooleanField(help_text=f"True when more than {REVIEW_COUNT_CAP} ratings match.")
    results = ReviewEntrySerializer(many=True)
