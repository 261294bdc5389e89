"""Datasets API (curators and admins only): versions (create, freeze, items), exports (create, follow, download).

Lists use keyset (cursor) pagination: no OFFSET and no COUNT(*) over large item tables.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from aesplatform.accounts.permissions import IsCurator
from aesplatform.annotation import selectors as annotation_selectors
from aesplatform.common import pagination as common_pagination
from aesplatform.common.exceptions import ConflictError
from aesplatform.common.job_api import JOB_LIFE_CYCLE_FIELDS, job_action_view, stalled_field
from aesplatform.common.models import DIMENSION_FIELDS
from aesplatform.common.object_transfer import object_read_range
from aesplatform.common.serializers import StrictInputSerializer

from . import limits, selectors, services, writers
from .downloads import ranged_file_response, ranged_response
from .models import DatasetItem, DatasetKind, DatasetVersion, Export, ExportFormat, Split

TAGS = ["datasets"]


class KeysetPagination(common_pagination.KeysetPagination):
    max_page_size = 1000


class ItemPagination(KeysetPagination):
    ordering = "id"


# --- serializers ----------------------------------------------------------------------------------------------


# `state`, `kind`, `format` and `split` are enums in the schema, named by SPECTACULAR_SETTINGS'
# ENUM_NAME_OVERRIDES (DatasetVersionStateEnum, DatasetKindEnum, ...): other apps have fields of the same names.
_KINDS = " | ".join(DatasetKind.values)


class DatasetVersionSerializer(serializers.ModelSerializer):
    campaigns = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = ["id", "name", "version", "state", "kind", "description", "campaigns", "include_imported_labels",
                  "consensus_method", "min_ratings", "split_seed", "test_ratio", "code_version", "counts",
                  "created_by", "created_at", "frozen_at"]
        read_only_fields = fields


class DatasetVersionCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    campaigns = serializers.PrimaryKeyRelatedField(many=True, queryset=annotation_selectors.campaign_list(),
                                                   required=False, default=list)
    include_imported_labels = serializers.BooleanField(default=True)
    kind = serializers.CharField(default=DatasetKind.MIXED, help_text=f"{_KINDS}: expert needs all 12 dimensions "
                                 "for every image, overall keeps the overall score only")
    consensus_method = serializers.ChoiceField(
        choices=[(m, m) for m in services.CONSENSUS_METHODS], default=None, allow_null=True,
        help_text="The method whose campaign labels the version takes; by default the campaigns' own",
    )
    min_ratings = serializers.IntegerField(min_value=limits.MIN_RATINGS_MIN, max_value=limits.MIN_RATINGS_MAX,
                                           default=limits.MIN_RATINGS_DEFAULT)
    split_seed = serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1, default=0)
    test_ratio = serializers.FloatField(min_value=0.0, max_value=1.0, default=limits.TEST_RATIO_DEFAULT)
    freeze = serializers.BooleanField(default=False, help_text="Freeze right away (select, split, snapshot).")

    def validate_test_ratio(self, value):
        if not 0.0 < value < 1.0:
            raise serializers.ValidationError("test_ratio must be between 0 and 1 (exclusive).")
        return value


class DatasetItemSerializer(serializers.ModelSerializer):
    image_sha256 = serializers.CharField(source="image.sha256", read_only=True)

    class Meta:
        model = DatasetItem
        fields = ["id", "image", "image_sha256", "split", "is_expert", "source", "rating_count", *DIMENSION_FIELDS]
        read_only_fields = fields


class ExportSerializer(serializers.ModelSerializer):
    version = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    download_url = serializers.SerializerMethodField()
    stalled = stalled_field()

    class Meta:
        model = Export
        fields = ["id", "version", "format", "options", "state", "total", "processed", "path", "archive_key",
                  "archive_size", "manifest", "error", "created_by", "created_at", "started_at", "finished_at",
                  "download_url", *JOB_LIFE_CYCLE_FIELDS]
        read_only_fields = fields

    def get_download_url(self, export: Export) -> str | None:
        if export.state != "succeeded" or export.archive_size is None:
            return None
        request = self.context.get("request")
        url = f"/api/exports/{export.pk}/download/"
        return request.build_absolute_uri(url) if request else url


class ExportCreateSerializer(StrictInputSerializer):
    version = serializers.PrimaryKeyRelatedField(queryset=DatasetVersion.objects.all())
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    options = serializers.DictField(
        required=False, default=dict,
        help_text="images: hardlink|symlink|copy; archive: bool; target_dir: absolute path inside the export "
                  "roots; training_jsonl only: image_paths: relative (default)|absolute, prompts: bool, "
                  "prompt_seed: int.",
    )


# --- views ----------------------------------------------------------------------------------------------------


class DatasetVersionListCreateView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = DatasetVersionSerializer
    pagination_class = KeysetPagination
    filter_backends: list = []

    def get_queryset(self):
        return selectors.dataset_version_list()

    @extend_schema(tags=TAGS, summary="Dataset versions, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, summary="Create a dataset version (a draft; optionally frozen at once)",
                   request=DatasetVersionCreateSerializer, responses={201: DatasetVersionSerializer})
    def post(self, request):
        data = DatasetVersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        freeze = values.pop("freeze")
        version = services.dataset_version_create(created_by=request.user, **values)
        if freeze:
            version = services.dataset_version_freeze(version=version)
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetVersionDetailView(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = DatasetVersionSerializer

    def get_queryset(self):
        return selectors.dataset_version_list()

    @extend_schema(tags=TAGS, summary="A dataset version with its counts and split balance report")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DatasetVersionFreezeView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAGS, summary="Freeze a draft: select labels, split, snapshot (then immutable)",
                   request=None, responses={200: DatasetVersionSerializer,
                                            400: OpenApiResponse(description="Empty selection or missing labels"),
                                            409: OpenApiResponse(description="Already frozen")})
    def post(self, request, pk: int):
        version = generics.get_object_or_404(DatasetVersion, pk=pk)
        version = services.dataset_version_freeze(version=version)
        return Response(DatasetVersionSerializer(version).data)


class DatasetItemListView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = DatasetItemSerializer
    pagination_class = ItemPagination
    filter_backends: list = []

    def get_queryset(self):
        version = generics.get_object_or_404(DatasetVersion, pk=self.kwargs["pk"])
        split = self.request.query_params.get("split") or None
        if split is not None and split not in Split.values:
            raise serializers.ValidationError({"split": f"must be one of {', '.join(Split.values)}"})
        return selectors.dataset_item_list(version=version, split=split)

    @extend_schema(tags=TAGS, summary="The items (image, labels, split) of a version, keyset-paged",
                   parameters=[OpenApiParameter("split", str, enum=Split.values, required=False)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExportListCreateView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = ExportSerializer
    pagination_class = KeysetPagination
    filter_backends: list = []

    def get_queryset(self):
        return selectors.export_list()

    @extend_schema(tags=TAGS, summary="Exports, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS, summary="Export a frozen version (a worker job); the same choice while one is live gives it back",
        request=ExportCreateSerializer,
        responses={201: ExportSerializer, 200: OpenApiResponse(ExportSerializer, description="That export exists"),
                   400: OpenApiResponse(description="Unknown option, bad value or target directory not empty"),
                   409: OpenApiResponse(description="The version is a draft")},
    )
    def post(self, request):
        data = ExportCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export, created = services.export_create(
            version=data.validated_data["version"], format=data.validated_data["format"],
            options=data.validated_data["options"], created_by=request.user,
        )
        return Response(ExportSerializer(export, context={"request": request}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ExportDetailView(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = ExportSerializer

    def get_queryset(self):
        return selectors.export_list()

    @extend_schema(tags=TAGS, summary="An export: state, progress, manifest summary")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


ExportResumeView = job_action_view(model=Export, serializer_class=ExportSerializer, action="resume", tags=TAGS,
                                   service=lambda export: services.export_resume(export=export),
                                   permission_classes=[IsCurator])
ExportCancelView = job_action_view(model=Export, serializer_class=ExportSerializer, action="cancel", tags=TAGS,
                                   service=lambda export: services.export_cancel(export=export),
                                   permission_classes=[IsCurator])


class TarRenderer(BaseRenderer):
    """Lets `Accept: application/x-tar` through content negotiation; errors are rendered as JSON."""

    media_type = "application/x-tar"
    format = "tar"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


def archive_response(request, export: Export):
    """The export's archive, streamed, with Range/If-Range support; 409 while not finished, 404 when gone.

    The tar is built from the export's files as it is sent (services.export_archive: layout from the manifest),
    byte-identical for the same version and options; an archive file written by an earlier version of the job
    (archive_path) is served as it is. On an object store the job uploaded that same tar as one object
    (archive_key): it is proxied here, each request one ranged GET, so the permission check above stays the only
    way in (a presigned URL would let anyone holding it download until it expires). A store that does not answer
    is a 503 before any byte; one that fails mid-stream cuts the body short, and the client resumes with Range
    and If-Range."""
    from pathlib import Path

    if export.state != "succeeded":
        raise ConflictError(f"Export {export.pk} is {export.state}; the archive exists once it has succeeded.",
                            code="not_ready")
    # The archive is a function of the files, which the manifest's hash covers: a strong validator.
    digest = (export.manifest or {}).get("manifest_sha256", "")
    etag = f'"export-{export.pk}-{export.archive_size}-{digest[:32]}"'
    if export.archive_key:  # on the object store: the archive is one object, read by ranged GETs
        try:
            size = services.export_stored_archive_size(export)
        except services.ArchiveUnavailable as exc:
            raise NotFound(str(exc)) from None
        name = export.archive_key.rpartition("/")[2]
        return ranged_response(
            request, size=size, filename=name, etag=etag, content_type="application/x-tar",
            body=lambda start, end: object_read_range(export.archive_key, start, end),
        )
    if export.archive_path:  # written by the job before archives were streamed
        path = Path(export.archive_path)
        if not path.is_file():
            raise NotFound("The archive file is missing.")
        return ranged_file_response(request, path, filename=path.name, etag=etag, content_type="application/x-tar")
    try:
        root, layout = services.export_archive(export)
    except services.ArchiveUnavailable as exc:
        raise NotFound(str(exc)) from None
    return ranged_response(
        request, size=layout.size, body=lambda start, end: writers.iter_archive(root, layout, start=start, end=end),
        filename=f"{root.name}.tar", etag=etag, content_type="application/x-tar",
    )


class ExportDownloadView(APIView):
    permission_classes = [IsCurator]
    renderer_classes = [JSONRenderer, TarRenderer]

    @extend_schema(
        tags=TAGS, summary="Download the export as one tar archive: streamed, resumable (Range, If-Range)",
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER, required=False,
                                     description="bytes=START-[END] or bytes=-SUFFIX"),
                    OpenApiParameter("If-Range", str, OpenApiParameter.HEADER, required=False,
                                     description="The ETag of the first part")],
        responses={(200, "application/x-tar"): OpenApiTypes.BINARY,
                   (206, "application/x-tar"): OpenApiTypes.BINARY,
                   404: OpenApiResponse(description="No archive"),
                   409: OpenApiResponse(description="Not finished"),
                   416: OpenApiResponse(description="Range not satisfiable")},
    )
    def get(self, request, pk: int):
        export = generics.get_object_or_404(Export, pk=pk)
        return archive_response(request, export)
