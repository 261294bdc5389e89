"""API shapes of the catalog: images, import jobs, import items, and the import request."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aesplatform.common.job_api import JOB_LIFE_CYCLE_FIELDS, stalled_field
from aesplatform.common.models import JobState
from aesplatform.common.serializers import StrictInputSerializer

from .models import Image, ImportItem, ImportJob, ImportKind


class ImageSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id", "sha256", "phash", "near_duplicate_group", "width", "height", "format", "mode", "file_size",
            "original_name", "source", "status", "import_job", "created_at", "file_url", "thumbnail_url",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_file_url(self, image: Image) -> str:
        return reverse("image-file", args=[image.pk])

    @extend_schema_field(serializers.CharField())
    def get_thumbnail_url(self, image: Image) -> str:
        return reverse("image-thumbnail", args=[image.pk])


class ImportJobStateField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=JobState.choices, read_only=True, **kwargs)


class _ImportJobStateSchema(OpenApiSerializerFieldExtension):
    """The job's `state` as its own named enum component: other apps have `state` enums with other values, and
    drf-spectacular would otherwise invent a colliding name for them."""

    target_class = ImportJobStateField

    def map_serializer_field(self, auto_schema, direction):
        component = ResolvedComponent(
            name="ImportJobStateEnum", type=ResolvedComponent.SCHEMA, object="ImportJobStateEnum",
            schema={"type": "string", "enum": list(JobState.values)},
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class ImportJobSerializer(serializers.ModelSerializer):
    state = ImportJobStateField()
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    progress = serializers.SerializerMethodField()
    stalled = stalled_field()

    class Meta:
        model = ImportJob
        fields = [
            "id", "kind", "state", "created_by", "source_path", "source_name", "total", "processed",
            "imported_count", "duplicate_count", "error_count", "labels_count", "progress", "error",
            "created_at", "started_at", "finished_at", *JOB_LIFE_CYCLE_FIELDS,
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(help_text="processed / total, 0..1 (0 while planning)"))
    def get_progress(self, job: ImportJob) -> float:
        return round(job.processed / job.total, 4) if job.total else 0.0


class ImportItemSerializer(serializers.ModelSerializer):
    image_sha256 = serializers.CharField(source="image.sha256", read_only=True, default=None, allow_null=True)

    class Meta:
        model = ImportItem
        fields = ["id", "name", "outcome", "image", "image_sha256", "message", "label"]
        read_only_fields = fields


class ImportJobCreateSerializer(StrictInputSerializer):
    """multipart/form-data: `kind` and either `files` (upload, zip) or `path` (folder, zip, humanbeauty)."""

    kind = serializers.ChoiceField(choices=ImportKind.choices)
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False), required=False, default=list,
        help_text="The files of an upload import (many), or the one zip file of a zip import.",
    )
    path = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4096,
        help_text="A server folder or zip inside the allowed import roots (folder, zip, humanbeauty kinds).",
    )
    source_name = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200,
        help_text="Recorded as the images' source (HumanBeauty records use their own `source`).",
    )
