"""Modeling API (curators and admins only): training jobs, the model registry, pre-scoring runs and pre-scores."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aesplatform.accounts.permissions import IsCurator
from aesplatform.annotation import selectors as annotation_selectors
from aesplatform.common import pagination as common_pagination
from aesplatform.common.job_api import JOB_LIFE_CYCLE_FIELDS, job_action_view, stalled_field
from aesplatform.common.models import DIMENSION_FIELDS
from aesplatform.common.serializers import StrictInputSerializer
from aesplatform.datasets import selectors as dataset_selectors

from . import limits, presets, selectors, services
from .models import ModelVersion, Prescore, PrescoreRun, TrainingJob

TAGS = ["modeling"]
_JOB_STATES = "pending | running | succeeded | failed | cancelled"


KeysetPagination = common_pagination.KeysetPagination


# --- serializers ----------------------------------------------------------------------------------------------


class TrainingJobSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True, help_text=_JOB_STATES)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    model_version = serializers.SerializerMethodField()
    stalled = stalled_field()

    class Meta:
        model = TrainingJob
        fields = ["id", "dataset_version", "preset", "config", "state", "step", "total_steps",
                  "loss", "eta_seconds", "loss_curve", "metrics", "log", "output_dir", "error", "created_by",
                  "created_at", "started_at", "finished_at", "model_version", *JOB_LIFE_CYCLE_FIELDS]
        read_only_fields = fields

    def get_model_version(self, job: TrainingJob) -> int | None:
        version = getattr(job, "model_version", None)
        return version.pk if version is not None else None


class TrainingJobCreateSerializer(StrictInputSerializer):
    dataset_version = serializers.PrimaryKeyRelatedField(queryset=dataset_selectors.dataset_version_list())
    preset = serializers.ChoiceField(choices=[(p, p) for p in presets.preset_names()])
    config = serializers.DictField(
        required=False, default=dict,
        help_text="Overrides of the preset: " + ", ".join(sorted(presets.OVERRIDES)) + ". `processes` (default 1, at "
                  "most AESP_TRAINING_MAX_PROCESSES): train data-parallel in that many processes on the worker; the "
                  "preset's batch_size is the batch of the whole run and must divide by it.")


class ModelVersionSerializer(serializers.ModelSerializer):
    promoted_by = serializers.CharField(source="promoted_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "backend", "training_job", "dataset_version", "checkpoint_path", "checkpoint_key",
                  "config", "metrics", "report_dir", "promoted", "promoted_at", "promoted_by", "created_at"]
        read_only_fields = fields


class ModelVersionRegisterSerializer(StrictInputSerializer):
    training_job = serializers.PrimaryKeyRelatedField(queryset=TrainingJob.objects.all(), required=False,
                                                      allow_null=True, default=None)
    checkpoint_path = serializers.CharField(required=False, allow_blank=True, default="", max_length=1024)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    dataset_version = serializers.PrimaryKeyRelatedField(queryset=dataset_selectors.dataset_version_list(),
                                                         required=False, allow_null=True, default=None)

    def validate(self, attrs):
        if (attrs["training_job"] is None) == (not attrs["checkpoint_path"]):
            raise serializers.ValidationError("Give either training_job or checkpoint_path (exactly one).")
        return attrs


class PrescoreRunSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True, help_text=_JOB_STATES)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    stalled = stalled_field()

    class Meta:
        model = PrescoreRun
        fields = ["id", "model_version", "image_ids", "state", "total", "processed", "max_tiles", "batch_size",
                  "error", "created_by", "created_at", "started_at", "finished_at", *JOB_LIFE_CYCLE_FIELDS]
        read_only_fields = fields


class PrescoreRunCreateSerializer(StrictInputSerializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), required=False,
                                                       allow_null=True, default=None,
                                                       help_text="Default: the promoted model.")
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                      max_length=1_000_000, help_text="Default: every approved image.")
    max_tiles = serializers.IntegerField(min_value=limits.MAX_TILES_MIN, max_value=limits.MAX_TILES_MAX, required=False,
                                         allow_null=True, default=None,
                                         help_text="Default: 1 for a model trained here, 12 (the reference's) for a "
                                                   "released HumanAesExpert checkpoint.")
    batch_size = serializers.IntegerField(min_value=limits.BATCH_SIZE_MIN, max_value=limits.BATCH_SIZE_MAX,
                                          default=limits.BATCH_SIZE_DEFAULT)


class ModelPrescoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prescore
        fields = ["id", "image", "model_version", "lm_score", "regression_score", "metavoter_score", "uncertainty",
                  *DIMENSION_FIELDS, "created_at"]
        read_only_fields = fields


# --- views ----------------------------------------------------------------------------------------------------


class TrainingJobListCreateView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = TrainingJobSerializer
    pagination_class = KeysetPagination
    filter_backends: list = []

    def get_queryset(self):
        return selectors.training_job_list()

    @extend_schema(tags=TAGS, summary="Training jobs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, summary="Start a training job on a frozen dataset version (runs on the gpu queue)",
                   request=TrainingJobCreateSerializer,
                   responses={201: TrainingJobSerializer,
                              400: OpenApiResponse(description="Empty version, unknown preset or config key, "
                                                               "missing backbone path, processes out of range or "
                                                               "not dividing the batch size"),
                              409: OpenApiResponse(description="The dataset version is not frozen")})
    def post(self, request):
        data = TrainingJobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.training_job_create(created_by=request.user, **data.validated_data)
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_201_CREATED)


class TrainingJobDetailView(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = TrainingJobSerializer

    def get_queryset(self):
        return selectors.training_job_list()

    @extend_schema(tags=TAGS, summary="A training job: progress, loss curve, ETA, metrics, log")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TrainingJobCancelView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAGS, summary="Cancel a training job (a running one stops at its next step, checkpointed)",
                   request=None, responses={200: TrainingJobSerializer,
                                            409: OpenApiResponse(description="Already finished")})
    def post(self, request, pk: int):
        job = generics.get_object_or_404(TrainingJob, pk=pk)
        return Response(TrainingJobSerializer(services.training_job_cancel(job=job)).data)


TrainingJobResumeView = job_action_view(model=TrainingJob, serializer_class=TrainingJobSerializer, action="resume",
                                        tags=TAGS, service=lambda job: services.training_job_resume(job=job),
                                        permission_classes=[IsCurator])


class ModelVersionListCreateView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = ModelVersionSerializer
    pagination_class = KeysetPagination
    filter_backends: list = []

    def get_queryset(self):
        return selectors.model_version_list()

    @extend_schema(tags=TAGS, summary="Model versions, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, summary="Register a model: a succeeded training job's, or an existing checkpoint "
                   "directory (model_core or a released HumanAesExpert checkpoint)",
                   request=ModelVersionRegisterSerializer,
                   responses={201: ModelVersionSerializer,
                              400: OpenApiResponse(description="Not a checkpoint directory"),
                              409: OpenApiResponse(description="The training job did not succeed")})
    def post(self, request):
        data = ModelVersionRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.model_version_register(**data.validated_data)
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelVersionDetailView(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_version_list()

    @extend_schema(tags=TAGS, summary="A model version with its evaluation report")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ModelVersionPromoteView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAGS, summary="Promote a model version (exactly one is promoted at a time)", request=None,
                   responses={200: ModelVersionSerializer,
                              409: OpenApiResponse(description="Its job failed, checkpoint gone, or another "
                                                               "promotion is in progress")})
    def post(self, request, pk: int):
        version = generics.get_object_or_404(ModelVersion, pk=pk)
        return Response(ModelVersionSerializer(services.model_version_promote(model_version=version,
                                                                              user=request.user)).data)


class PrescoreRunListCreateView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = PrescoreRunSerializer
    pagination_class = KeysetPagination
    filter_backends: list = []

    def get_queryset(self):
        return selectors.prescore_run_list()

    @extend_schema(tags=TAGS, summary="Pre-scoring runs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, summary="Pre-score images with the promoted model (or a named one) on the gpu queue",
                   request=PrescoreRunCreateSerializer,
                   responses={201: PrescoreRunSerializer,
                              400: OpenApiResponse(description="Unknown image ids or no images"),
                              409: OpenApiResponse(description="No promoted model")})
    def post(self, request):
        data = PrescoreRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.prescore_run_create(created_by=request.user, **data.validated_data)
        return Response(PrescoreRunSerializer(run).data, status=status.HTTP_201_CREATED)


class PrescoreRunDetailView(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = PrescoreRunSerializer

    def get_queryset(self):
        return selectors.prescore_run_list()

    @extend_schema(tags=TAGS, summary="A pre-scoring run and its progress")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


PrescoreRunResumeView = job_action_view(model=PrescoreRun, serializer_class=PrescoreRunSerializer, action="resume",
                                        tags=TAGS, service=lambda run: services.prescore_run_resume(run=run),
                                        permission_classes=[IsCurator])
PrescoreRunCancelView = job_action_view(model=PrescoreRun, serializer_class=PrescoreRunSerializer, action="cancel",
                                        tags=TAGS, service=lambda run: services.prescore_run_cancel(run=run),
                                        permission_classes=[IsCurator])


class PrescoreListView(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = ModelPrescoreSerializer
    filter_backends: list = []

    def get_queryset(self):
        raw = self.request.query_params.get("model_version")
        if raw is None:
            version = selectors.model_version_promoted()
            if version is None:
                raise serializers.ValidationError({"model_version": "no model is promoted; name a model version"})
        else:
            if not raw.isdigit():
                raise serializers.ValidationError({"model_version": "must be a model version id"})
            version = generics.get_object_or_404(ModelVersion, pk=int(raw))
        ordering = self.request.query_params.get("ordering", "-metavoter_score")
        if ordering not in selectors.PRESCORE_ORDERINGS:
            raise serializers.ValidationError({"ordering": f"must be one of {', '.join(selectors.PRESCORE_ORDERINGS)}"})
        return selectors.prescore_list(model_version=version, ordering=ordering)

    @extend_schema(tags=TAGS, summary="Pre-scores of one model (default: the promoted one), sortable",
                   parameters=[OpenApiParameter("model_version", int, required=False),
                               OpenApiParameter("ordering", str, enum=list(selectors.PRESCORE_ORDERINGS),
                                                required=False)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class CampaignPrioritiesSerializer(serializers.Serializer):
    campaign = serializers.IntegerField(read_only=True)
    reordered_tasks = serializers.IntegerField(read_only=True)


class CampaignPrioritiesRefreshView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAGS, summary="Re-order an active-learning campaign's open tasks from the promoted model's "
                   "pre-scores (head disagreement, uncertainty, diversity over CLIP embeddings)", request=None,
                   responses={200: CampaignPrioritiesSerializer,
                              409: OpenApiResponse(description="Random-order campaign, no promoted model, or a model "
                                                               "that gives no uncertainty / head disagreement "
                                                               "(code no_uncertainty: a released HumanAesExpert)")})
    def post(self, request, pk: int):
        campaign = generics.get_object_or_404(annotation_selectors.campaign_list(), pk=pk)
        count = services.campaign_priorities_refresh(campaign=campaign)
        return Response({"campaign": campaign.pk, "reordered_tasks": count})
