"""Curation API (curators only): filter runs, their progress and results, thresholds, review batches, decisions."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from aesplatform.accounts.permissions import IsCurator

from . import selectors, services
from .engine import prompts as engine_prompts
from .engine import proposals as engine_proposals
from .models import FilterResult, FilterRun, ProposedDecision, ReviewBatch
from .serializers import (
    FilterDefaultsSerializer,
    FilterResultSerializer,
    FilterRunCreateSerializer,
    FilterRunDetailSerializer,
    FilterRunSerializer,
    ReviewBatchDecideSerializer,
    ReviewBatchDetailSerializer,
    ReviewBatchSerializer,
    ThresholdsSerializer,
)


def run_detail_data(run: FilterRun) -> dict:
    run = selectors.filter_run_get(run_id=run.pk)
    run.counts = selectors.filter_run_counts(run=run)
    return FilterRunDetailSerializer(run).data


class FilterRunListCreateView(ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = FilterRunSerializer
    filterset_fields = ["state"]

    def get_queryset(self):
        return selectors.filter_run_list()

    @extend_schema(summary="List filter runs")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=FilterRunCreateSerializer, responses={201: FilterRunDetailSerializer},
                   summary="Start a filter run over a set of images (scored on the gpu queue)")
    def post(self, request):
        data = FilterRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.filter_run_create(created_by=request.user, **data.validated_data)
        return Response(run_detail_data(run), status=status.HTTP_201_CREATED)


class FilterDefaultsView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=FilterDefaultsSerializer, summary="Default CLIP model, prompt set and thresholds")
    def get(self, request):
        model, checkpoint = services.filter_default_model()
        return Response(FilterDefaultsSerializer({
            "clip_model_name": model, "clip_checkpoint": checkpoint,
            "prompt_set": engine_prompts.default_prompt_set(), "thresholds": engine_proposals.default_thresholds(),
        }).data)


class FilterRunDetailView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=FilterRunDetailSerializer, summary="A filter run: progress, settings and counts")
    def get(self, request, pk: int):
        return Response(run_detail_data(get_object_or_404(FilterRun, pk=pk)))


class FilterRunThresholdsView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=ThresholdsSerializer, responses=FilterRunDetailSerializer,
                   summary="Change thresholds: re-propose the undecided images without running the model again")
    def patch(self, request, pk: int):
        data = ThresholdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.filter_run_repropose(run=get_object_or_404(FilterRun, pk=pk),
                                            thresholds=data.validated_data["thresholds"])
        return Response(run_detail_data(run))


class FilterRunResumeView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses={202: FilterRunDetailSerializer},
                   summary="Queue a stalled or failed run again; only unscored images are processed")
    def post(self, request, pk: int):
        run = services.filter_run_resume(run=get_object_or_404(FilterRun, pk=pk))
        return Response(run_detail_data(run), status=status.HTTP_202_ACCEPTED)


class FilterRunCancelView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=FilterRunDetailSerializer, summary="Cancel a run that is still scoring")
    def post(self, request, pk: int):
        run = services.filter_run_cancel(run=get_object_or_404(FilterRun, pk=pk))
        return Response(run_detail_data(run))


class FilterResultListView(ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = FilterResultSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return FilterResult.objects.none()
        run = get_object_or_404(FilterRun, pk=self.kwargs["pk"])
        results = selectors.filter_result_list(run=run)
        params = self.request.query_params
        if params.get("proposed_decision") in ProposedDecision.values:
            results = results.filter(proposed_decision=params["proposed_decision"])
        if params.get("errors") == "true":
            results = results.exclude(error="")
        if (batch := params.get("batch", "")).isdigit():
            results = results.filter(batch_id=int(batch))
        return results

    @extend_schema(
        parameters=[
            OpenApiParameter("proposed_decision", enum=ProposedDecision.values, required=False),
            OpenApiParameter("errors", bool, required=False, description="Only images that could not be scored"),
            OpenApiParameter("batch", int, required=False),
        ],
        summary="Signals and proposals of a run's images",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ReviewBatchListView(ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = ReviewBatchSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReviewBatch.objects.none()
        return selectors.review_batch_list(run=get_object_or_404(FilterRun, pk=self.kwargs["pk"]))

    @extend_schema(summary="Review batches of a run")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def batch_detail_data(batch_id: int) -> dict:
    batch = selectors.review_batch_get(batch_id=batch_id)
    batch.ordered_results = list(selectors.review_batch_results(batch=batch))
    batch.decision_rows = list(selectors.review_batch_decisions(batch=batch))
    batch.size = len(batch.ordered_results)
    batch.proposed_keep = sum(r.proposed_decision == ProposedDecision.KEEP for r in batch.ordered_results)
    return ReviewBatchDetailSerializer(batch).data


class ReviewBatchDetailView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=ReviewBatchDetailSerializer, summary="A review batch: images by uncertainty, decisions")
    def get(self, request, pk: int):
        get_object_or_404(ReviewBatch, pk=pk)
        return Response(batch_detail_data(pk))


class ReviewBatchDecideView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=ReviewBatchDecideSerializer, responses=ReviewBatchDetailSerializer,
                   summary="Decide a batch: approve it, with per-image overrides (recorded as the audit trail)")
    def post(self, request, pk: int):
        data = ReviewBatchDecideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        batch = get_object_or_404(ReviewBatch, pk=pk)
        services.review_batch_decide(batch=batch, decided_by=request.user, decisions=data.validated_data["decisions"])
        return Response(batch_detail_data(pk))

