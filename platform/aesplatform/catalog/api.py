"""Catalog API: images (curators list them; an annotator may fetch the files of the images leased to them, and
gets a 404 for any other id) and import jobs (curators and admins only)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import django_filters
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from aesplatform.accounts.permissions import IsAnnotator, IsCurator
from aesplatform.common.filters import IntegerFilter
from aesplatform.common.objectstore import stored_file_response
from aesplatform.common.parsers import BoundedJSONParser

from . import selectors, services
from .imaging import SUPPORTED_FORMATS, content_type_for_format, extension_for_format
from .models import Image, ImageStatus, ImportItem, ImportOutcome
from .serializers import ImageSerializer, ImportItemSerializer, ImportJobCreateSerializer, ImportJobSerializer

IMAGES_TAG = ["images"]
IMPORTS_TAG = ["imports"]
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ImageFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ImageStatus.choices)
    source = django_filters.CharFilter()
    # Not `format`: DRF reads ?format= as the choice of renderer (URL_FORMAT_OVERRIDE).
    image_format = django_filters.CharFilter(field_name="format", lookup_expr="iexact",
                                             help_text="JPEG, PNG, WEBP, ...")
    near_duplicate_group = IntegerFilter()
    import_job = IntegerFilter(field_name="import_job_id")

    class Meta:
        model = Image
        fields = ["status", "source", "image_format", "near_duplicate_group", "import_job"]


class ImportItemFilter(django_filters.FilterSet):
    outcome = django_filters.ChoiceFilter(choices=ImportOutcome.choices)

    class Meta:
        model = ImportItem
        fields = ["outcome"]


class ImageFileRenderer(BaseRenderer):
    """Lets a client that accepts only images (an <img>, `Accept: image/jpeg`) through content negotiation;
    the file itself is a FileResponse, so this only ever renders an error body (as JSON)."""

    media_type = "image/*"
    format = "image"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


def _safe_filename(name: str, *, extension: str, suffix: str = "") -> str:
    """An ASCII file name for Content-Disposition: no quotes, slashes or control characters, the real
    extension of what is served (whatever the uploader called it)."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    stem = _FILENAME_UNSAFE.sub("_", stem).strip("._") or "image"
    return f"{stem[:100]}{suffix}.{extension}"


def _stream(field_file, *, content_type: str, filename: str, etag: str) -> FileResponse:
    response = stored_file_response(field_file.name, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    # Content-addressed: the bytes behind this URL never change; private because it needs a login.
    response["Cache-Control"] = "private, max-age=86400, immutable"
    response["ETag"] = f'"{etag}"'
    return response


@extend_schema_view(
    list=extend_schema(tags=IMAGES_TAG, summary="List images (curators)"),
    retrieve=extend_schema(tags=IMAGES_TAG, summary="One image (curators)"),
)
class ImageViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_converter = "id"
    serializer_class = ImageSerializer
    filterset_class = ImageFilter
    ordering_fields = ["id", "created_at", "width", "height", "file_size", "source"]
    ordering = ["id"]

    def get_queryset(self):
        if self.action in ("file", "thumbnail"):
            # object level: an annotator guessing ids gets a 404 for images never leased to them
            return selectors.image_files_visible_to(user=self.request.user)
        return selectors.image_list()

    def get_permissions(self):
        # Annotators need the pixels of what they rate, not the catalog.
        if self.action in ("file", "thumbnail"):
            return [IsAnnotator()]
        return [IsCurator()]

    @extend_schema(
        tags=IMAGES_TAG, summary="The original file (curators; annotators: images leased to them)",
        responses={(200, "image/*"): OpenApiTypes.BINARY, 404: OpenApiResponse(description="Missing")},
    )
    @action(detail=True, methods=["get"], url_path="file", filter_backends=[], pagination_class=None,
            renderer_classes=[JSONRenderer, ImageFileRenderer])
    def file(self, request, pk=None):
        image = self.get_object()
        extension = extension_for_format(image.format) if image.format in SUPPORTED_FORMATS else "bin"
        return _stream(
            image.file, content_type=content_type_for_format(image.format),
            filename=_safe_filename(image.original_name, extension=extension), etag=image.sha256,
        )

    @extend_schema(
        tags=IMAGES_TAG, summary="The JPEG thumbnail (curators; annotators: images leased to them)",
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, 404: OpenApiResponse(description="Missing")},
    )
    @action(detail=True, methods=["get"], url_path="thumbnail", filter_backends=[], pagination_class=None,
            renderer_classes=[JSONRenderer, ImageFileRenderer])
    def thumbnail(self, request, pk=None):
        image = self.get_object()
        return _stream(
            image.thumbnail, content_type="image/jpeg",
            filename=_safe_filename(image.original_name, extension="jpg", suffix="-thumb"), etag=f"t-{image.sha256}",
        )


@extend_schema_view(
    list=extend_schema(tags=IMPORTS_TAG, summary="List import jobs"),
    retrieve=extend_schema(tags=IMPORTS_TAG, summary="One import job with its progress"),
)
class ImportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Import jobs: curators and admins only (annotators neither start nor read imports)."""

    lookup_value_converter = "id"
    permission_classes = [IsCurator]
    serializer_class = ImportJobSerializer
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]
    filterset_fields = ["state", "kind"]
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self):
        return selectors.import_job_list()

    @extend_schema(
        tags=IMPORTS_TAG,
        summary="Start an import",
        description=(
            "multipart/form-data. `kind=upload` with many `files`; `kind=zip` with one uploaded zip in `files` or a "
            "server `path`; `kind=folder` or `kind=humanbeauty` with a server `path` inside the allowed import "
            "roots. The job runs in the worker; poll the job for progress and its items for the per-file report."
        ),
        request={"multipart/form-data": ImportJobCreateSerializer, "application/json": ImportJobCreateSerializer},
        responses={
            201: ImportJobSerializer,
            400: OpenApiResponse(description="Invalid request (path outside the roots, no files, not a zip, ...)"),
        },
    )
    def create(self, request):
        payload = ImportJobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        job = services.import_job_create(created_by=request.user, **payload.validated_data)
        return Response(ImportJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=IMPORTS_TAG, summary="The per-file report of a job (filter by outcome)",
        parameters=[OpenApiParameter("outcome", str, enum=ImportOutcome.values,
                                     description="pending, imported, duplicate or error")],
        responses=ImportItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"], url_path="items", filter_backends=[], serializer_class=ImportItemSerializer)
    def items(self, request, pk=None):
        job = self.get_object()
        filterset = ImportItemFilter(request.query_params, queryset=selectors.import_job_items(job=job))
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        queryset = filterset.qs
        # the job's counters give the count once it has finished (the paginator counts otherwise)
        outcome = filterset.form.cleaned_data.get("outcome") or ""
        self.stored_count = selectors.import_job_item_count(job=job, outcome=outcome)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ImportItemSerializer(page, many=True).data)

    @extend_schema(tags=IMPORTS_TAG, summary="Resume a failed or stalled job (its pending items only)",
                   request=None, responses={202: ImportJobSerializer,
                                            409: OpenApiResponse(description="Finished, cancelled, or running")})
    @action(detail=True, methods=["post"], url_path="resume", filter_backends=[], pagination_class=None)
    def resume(self, request, pk=None):
        job = services.import_job_resume(job=self.get_object())
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(tags=IMPORTS_TAG, summary="Cancel a job (a running one stops after its current chunk)",
                   request=None,
                   responses={200: ImportJobSerializer, 409: OpenApiResponse(description="Already finished")})
    @action(detail=True, methods=["post"], url_path="cancel", filter_backends=[], pagination_class=None)
    def cancel(self, request, pk=None):
        return Response(ImportJobSerializer(services.import_job_cancel(job=self.get_object())).data)
