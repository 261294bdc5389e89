"""Output and input shapes of the curation API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers

from aesplatform.common.job_api import JOB_LIFE_CYCLE_FIELDS, stalled_field
from aesplatform.common.models import JobState
from aesplatform.common.serializers import StrictInputSerializer

from . import limits
from .models import BatchState, CuratorDecision, FilterResult, FilterRun, ReviewBatch


class FilterRunStateField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=JobState.choices, read_only=True, **kwargs)


class ReviewBatchStateField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=BatchState.choices, read_only=True, **kwargs)


class _NamedEnumExtension(OpenApiSerializerFieldExtension):
    """A `state` enum as its own named component: other apps' `state` enums differ, and the names must not clash."""

    component_name: str
    values: list[str]

    def map_serializer_field(self, auto_schema, direction):
        component = ResolvedComponent(
            name=self.component_name, type=ResolvedComponent.SCHEMA, object=self.component_name,
            schema={"type": "string", "enum": list(self.values)},
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class _FilterRunStateExtension(_NamedEnumExtension):
    target_class = FilterRunStateField
    component_name = "FilterRunStateEnum"
    values = JobState.values


class _ReviewBatchStateExtension(_NamedEnumExtension):
    target_class = ReviewBatchStateField
    component_name = "ReviewBatchStateEnum"
    values = BatchState.values


class FilterRunSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)
    state = FilterRunStateField()
    progress = serializers.SerializerMethodField()
    batch_total = serializers.IntegerField(read_only=True, required=False)
    batch_pending = serializers.IntegerField(read_only=True, required=False)
    stalled = stalled_field()

    class Meta:
        model = FilterRun
        fields = ["id", "name", "state", "total", "processed", "progress", "clip_model_name", "clip_checkpoint",
                  "random_weights", "seconds_per_image", "prompt_set", "thresholds", "batch_size",
                  "review_batch_size", "error", "created_by",
                  "created_at", "started_at", "finished_at", "batch_total", "batch_pending", *JOB_LIFE_CYCLE_FIELDS]
        read_only_fields = fields

    def get_progress(self, run) -> float:
        return round(run.processed / run.total, 4) if run.total else 0.0


class FilterRunCountsSerializer(serializers.Serializer):
    scored = serializers.IntegerField()
    errors = serializers.IntegerField()
    proposed_keep = serializers.IntegerField()
    proposed_reject = serializers.IntegerField()
    near_duplicates = serializers.IntegerField()
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()
    overrides = serializers.IntegerField()


class FilterRunDetailSerializer(FilterRunSerializer):
    counts = FilterRunCountsSerializer(read_only=True)

    class Meta(FilterRunSerializer.Meta):
        fields = [*FilterRunSerializer.Meta.fields, "counts"]
        read_only_fields = fields


class FilterRunCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=1_000_000,
                                      help_text="Images to filter; leave out to select by source / import job.")
    source = serializers.CharField(max_length=200, required=False,
                                   help_text="Every imported or filtered image of this source.")
    import_job = serializers.IntegerField(min_value=1, required=False,
                                          help_text="Every imported or filtered image of this import job.")
    clip_model_name = serializers.CharField(max_length=100, required=False,
                                            help_text="open_clip model name (default ViT-L-14).")
    clip_checkpoint = serializers.CharField(
        max_length=1024, required=False, allow_blank=True,
        help_text="Absolute path of a local checkpoint; empty: random weights (tests).",
    )
    prompt_set = serializers.JSONField(required=False,
                                       help_text="{version, groups: {name: {positive: [...], negative: [...]}}}")
    thresholds = serializers.JSONField(required=False, help_text="Overrides of the default thresholds.")
    batch_size = serializers.IntegerField(min_value=limits.BATCH_SIZE_MIN, max_value=limits.BATCH_SIZE_MAX,
                                          default=limits.BATCH_SIZE_DEFAULT)
    review_batch_size = serializers.IntegerField(min_value=limits.REVIEW_BATCH_SIZE_MIN,
                                                 max_value=limits.REVIEW_BATCH_SIZE_MAX,
                                                 default=limits.REVIEW_BATCH_SIZE_DEFAULT)

    class Meta:
        ref_name = "FilterRunCreate"


class ThresholdsSerializer(StrictInputSerializer):
    thresholds = serializers.JSONField(help_text="Thresholds to change; the others keep their values.")

    class Meta:
        ref_name = "FilterRunThresholds"


class FilterDefaultsSerializer(serializers.Serializer):
    clip_model_name = serializers.CharField()
    clip_checkpoint = serializers.CharField()
    prompt_set = serializers.JSONField()
    thresholds = serializers.JSONField()


class FilterResultSerializer(serializers.ModelSerializer):
    image = serializers.IntegerField(source="image_id", read_only=True)
    near_duplicate_of = serializers.IntegerField(source="near_duplicate_of_id", read_only=True, allow_null=True)
    batch = serializers.IntegerField(source="batch_id", read_only=True, allow_null=True)
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = FilterResult
        fields = ["id", "image", "thumbnail_url", "scored_at", "error", "clip_probabilities", "face_count",
                  "largest_face_fraction", "blur_variance", "exposure", "is_exact_duplicate", "near_duplicate_of",
                  "proposed_decision", "reasons", "uncertainty", "batch"]
        read_only_fields = fields

    def get_thumbnail_url(self, result) -> str:
        return f"/api/images/{result.image_id}/thumbnail/"


class CuratorDecisionSerializer(serializers.ModelSerializer):
    image = serializers.IntegerField(source="image_id", read_only=True)
    decided_by = serializers.CharField(source="decided_by.get_username", read_only=True)

    class Meta:
        model = CuratorDecision
        fields = ["id", "image", "decision", "overrode_proposal", "decided_by", "decided_at"]
        read_only_fields = fields


class ReviewBatchSerializer(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.get_username", read_only=True, allow_null=True, default=None)
    state = ReviewBatchStateField()
    size = serializers.IntegerField(read_only=True, required=False)
    proposed_keep = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = ReviewBatch
        fields = ["id", "run", "number", "state", "decided_by", "decided_at", "size", "proposed_keep"]
        read_only_fields = fields


class ReviewBatchDetailSerializer(ReviewBatchSerializer):
    results = FilterResultSerializer(many=True, read_only=True, source="ordered_results",
                                     help_text="Most uncertain first (the order of the review grid).")
    decisions = CuratorDecisionSerializer(many=True, read_only=True, source="decision_rows")

    class Meta(ReviewBatchSerializer.Meta):
        fields = [*ReviewBatchSerializer.Meta.fields, "results", "decisions"]
        read_only_fields = fields


class DecisionInputSerializer(serializers.Serializer):
    image = serializers.IntegerField(min_value=1)
    decision = serializers.ChoiceField(choices=CuratorDecision.Decision.choices)

    class Meta:
        ref_name = "CuratorDecisionInput"


class ReviewBatchDecideSerializer(StrictInputSerializer):
    decisions = serializers.ListField(
        child=DecisionInputSerializer(), required=False, default=list, max_length=10_000,
        help_text="Per-image decisions; images left out get their proposal (keep = approve).",
    )

    class Meta:
        ref_name = "ReviewBatchDecide"
