"""Annotation API: campaigns, next task, submit / skip / flag, corrections, consensus, statistics."""

from __future__ import annotations

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from aesplatform.accounts.permissions import IsAnnotator, IsCurator
from aesplatform.accounts.roles import Role, user_has_role
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.filters import IntegerFilter
from aesplatform.common.objectstore import stored_file_response
from aesplatform.modeling import selectors as modeling_selectors

from . import hotpath, selectors, services
from .auth import HOT_PATH_AUTHENTICATION
from .models import Annotation, Assignment, Campaign, CampaignMode, CampaignState, Consensus
from .serializers import (
    AnnotationSerializer,
    AnnotatorCampaignSerializer,
    AssignmentOutSerializer,
    AssignmentRestoredSerializer,
    AssignmentStateSerializer,
    CampaignCreateSerializer,
    CampaignForRoleSerializer,
    CampaignSerializer,
    CampaignStatsSerializer,
    CampaignUpdateSerializer,
    ConsensusSerializer,
    CorrectSerializer,
    FlagSerializer,
    NextTaskRequestSerializer,
    ReviewInSerializer,
    ReviewQueueQuerySerializer,
    ReviewQueueSerializer,
    ReviewSerializer,
    SubmitSerializer,
    validated,
)

TAG = ["annotation"]


def _is_curator(request) -> bool:
    return user_has_role(request.user, Role.CURATOR)


def prescore_payload(image_id: int) -> dict | None:
    row = modeling_selectors.prescore_latest(image_id=image_id)
    if row is None:
        return None
    return {"metavoter_score": row.metavoter_score, "scores": row.scores_dict()}


def assignment_payload(assignment: Assignment) -> dict:
    """From the objects the lease service returns (task, its image's size and the campaign are in memory)."""
    campaign = assignment.task.campaign
    prescore = prescore_payload(assignment.task.image_id) if campaign.show_prescores else None
    return AssignmentOutSerializer.build(assignment, prescore=prescore)


class CampaignFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=CampaignState.choices)
    mode = django_filters.ChoiceFilter(choices=CampaignMode.choices)

    class Meta:
        model = Campaign
        fields = ["state", "mode"]


class CampaignListCreateView(ListAPIView):
    """Curators list every campaign and create them; annotators list the active campaigns they take part in."""

    permission_classes = [IsAnnotator]
    filterset_class = CampaignFilter
    ordering_fields = ["id", "created_at", "name"]

    def get_serializer_class(self):
        return CampaignSerializer if _is_curator(self.request) else AnnotatorCampaignSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Campaign.objects.none()
        return (
            selectors.campaigns_visible_to(user=self.request.user)
            .select_related("created_by").prefetch_related("annotators").order_by("-id")
        )

    @extend_schema(tags=TAG, summary="Campaigns you can see", responses=CampaignForRoleSerializer(many=True))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAG, summary="Create a campaign (curators)", request=CampaignCreateSerializer,
                   responses={201: CampaignSerializer})
    def post(self, request):
        if not _is_curator(request):
            raise PermissionDenied("This needs the curator role.")
        data = CampaignCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        annotator_ids = values.pop("annotators")
        users = list(services.user_by_ids(annotator_ids))
        if len(users) != len(set(annotator_ids)):
            raise ServiceError("unknown annotator ids")
        campaign = services.campaign_create(created_by=request.user, annotators=users, **values)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)


class CampaignDetailView(APIView):
    permission_classes = [IsAnnotator]

    def _campaign(self, request, pk) -> Campaign:
        return get_object_or_404(selectors.campaigns_visible_to(user=request.user), pk=pk)

    @extend_schema(tags=TAG, summary="A campaign (annotators: only their active ones)",
                   responses=CampaignForRoleSerializer)
    def get(self, request, pk: int):
        campaign = self._campaign(request, pk)
        serializer = CampaignSerializer if _is_curator(request) else AnnotatorCampaignSerializer
        return Response(serializer(campaign).data)

    @extend_schema(tags=TAG, summary="Change settings, annotators or state (curators)",
                   request=CampaignUpdateSerializer, responses=CampaignSerializer)
    def patch(self, request, pk: int):
        if not _is_curator(request):
            raise PermissionDenied("This needs the curator role.")
        campaign = self._campaign(request, pk)
        data = CampaignUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if "annotators" in values:
            ids = values["annotators"]
            users = list(services.user_by_ids(ids))
            if len(users) != len(set(ids)):
                raise ServiceError("unknown annotator ids")
            values["annotators"] = users
        campaign = services.campaign_update(campaign=campaign, data=values)
        return Response(CampaignSerializer(campaign).data)


class NextTaskView(APIView):
    permission_classes = [IsAnnotator]
    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(
        tags=TAG,
        summary="Lease the next task",
        description="Returns a task leased to you (a live lease you hold and did not list in `held` comes first), "
        "or 204 when the campaign has nothing left for you. At most two live leases per annotator and campaign.",
        request=NextTaskRequestSerializer,
        responses={200: AssignmentOutSerializer, 204: OpenApiResponse(description="Nothing left for you.")},
    )
    def post(self, request, pk: int):
        read = selectors.campaign_for_lease(campaign_id=pk, user=request.user)
        if read is None:
            raise services.NotFound("no such campaign")  # the answer a campaign one is not in gets too
        held = validated(NextTaskRequestSerializer, request.data)["held"]
        assignment = services.task_lease_next(campaign=read.campaign, annotator=request.user, held=held, read=read)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(assignment_payload(assignment))


class AssignmentSubmitView(APIView):
    permission_classes = [IsAnnotator]
    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(
        tags=TAG,
        summary="Submit the annotation of a leased task",
        description="Stored exactly once per idempotency key: a retry with the same key and content returns the "
        "first result (200); the same key with other content is a 409.",
        request=SubmitSerializer,
        responses={201: AnnotationSerializer, 200: AnnotationSerializer},
    )
    def post(self, request, pk: int):
        values = validated(SubmitSerializer, request.data)
        annotation, created = services.annotation_submit(assignment_id=pk, annotator=request.user, **values)
        return Response(
            hotpath.annotation_payload(annotation), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class AssignmentSkipView(APIView):
    permission_classes = [IsAnnotator]
    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(tags=TAG, summary="Skip a leased task (you will not see the image again)", request=None,
                   responses=AssignmentStateSerializer)
    def post(self, request, pk: int):
        assignment = services.assignment_skip(assignment_id=pk, annotator=request.user)
        return Response({"id": assignment.id, "state": assignment.state})


class AssignmentFlagView(APIView):
    permission_classes = [IsAnnotator]
    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(tags=TAG, summary="Flag a leased task's image as broken", request=FlagSerializer,
                   responses=AssignmentStateSerializer)
    def post(self, request, pk: int):
        data = FlagSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_flag(assignment_id=pk, annotator=request.user, **data.validated_data)
        return Response({"id": assignment.id, "state": assignment.state})


_RESTORE_MINUTES = int(services.RESTORE_WINDOW.total_seconds() // 60)


class AssignmentRestoreView(APIView):
    permission_classes = [IsAnnotator]
    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(
        tags=TAG,
        summary="Undo a skip or a flag: the task is leased to you again",
        description=f"For your own assignment skipped or flagged in the last {_RESTORE_MINUTES} minutes, while its "
        "task is still open with a place for you: it becomes a live lease again (a fresh lease time). A repeat "
        "returns the live lease unchanged (idempotent); when the task cannot come back (taken by others, finished, "
        "too late) a 409 says why.",
        request=None,
        responses=AssignmentRestoredSerializer,
    )
    def post(self, request, pk: int):
        assignment = services.assignment_restore(assignment_id=pk, annotator=request.user)
        return Response({"id": assignment.id, "state": assignment.state, "leased_until": assignment.leased_until})


class AssignmentImageView(APIView):
    """The full-resolution image of a task, for the annotator it was leased to (and curators)."""

    permission_classes = [IsAnnotator]

    @extend_schema(tags=TAG, summary="The image of a leased task", responses={(200, "image/*"): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        # another annotator's assignment is a 404, as for annotations and campaigns: ids are not confirmed
        assignment = get_object_or_404(
            selectors.assignments_visible_to(user=request.user).select_related("task__image"), pk=pk
        )
        image = assignment.task.image
        response = stored_file_response(image.file.name, content_type=f"image/{image.format.lower() or 'jpeg'}",
                                        missing="The image file is missing.")
        response["Cache-Control"] = "private, max-age=3600"
        return response


class AnnotationFilter(django_filters.FilterSet):
    campaign = IntegerFilter(field_name="task__campaign_id")
    annotator = IntegerFilter(field_name="annotator_id")
    task = IntegerFilter(field_name="task_id")

    class Meta:
        model = Annotation
        fields = ["campaign", "annotator", "task"]


class AnnotationListView(ListAPIView):
    """Curators read every annotation; annotators only their own (asking for another's is a 403)."""

    permission_classes = [IsAnnotator]
    serializer_class = AnnotationSerializer
    filterset_class = AnnotationFilter
    ordering_fields = ["id", "created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        annotator = self.request.query_params.get("annotator")
        if annotator and not _is_curator(self.request) and annotator != str(self.request.user.pk):
            raise PermissionDenied("Annotators can read only their own annotations.")
        return selectors.annotations_visible_to(user=self.request.user).order_by("-id")

    @extend_schema(tags=TAG, summary="Annotations")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AnnotationDetailView(RetrieveAPIView):
    permission_classes = [IsAnnotator]
    serializer_class = AnnotationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        return selectors.annotations_visible_to(user=self.request.user)

    @extend_schema(tags=TAG, summary="One annotation (annotators: only their own)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AnnotationCorrectView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(
        tags=TAG,
        summary="Correct your annotation",
        description="Stores a new annotation that supersedes this one; the original stays unchanged in the history. "
        "Only your own annotation, only while the campaign is active.",
        request=CorrectSerializer,
        responses={201: AnnotationSerializer, 200: AnnotationSerializer},
    )
    def post(self, request, pk: int):
        data = CorrectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotation, created = services.annotation_correct(
            annotation_id=pk, annotator=request.user, **data.validated_data
        )
        return Response(
            AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class CampaignStatsView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAG, summary="Progress, agreement, histograms, annotator table and throughput (curators)",
                   responses=CampaignStatsSerializer)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        # as the worker's quality update stored them after the last submits (computing them per request does not
        # scale); computed now for a campaign that has none yet
        stored = selectors.campaign_stats_stored(campaign=campaign)
        if stored is None:
            services.campaign_snapshot_refresh(campaign=campaign)
            stored = selectors.campaign_stats_stored(campaign=campaign)
        stats, computed_at = stored
        payload = {
            "computed_at": computed_at,
            "progress": {**stats.progress.__dict__, "percent": stats.progress.percent},
            "dimensions": [d.__dict__ for d in stats.dimensions],
            "annotators": [a.__dict__ for a in stats.annotators],
            "throughput": [{"hour": h, "annotations": n} for h, n in stats.throughput],
        }
        return Response(CampaignStatsSerializer(payload).data)


class CampaignConsensusView(ListAPIView):
    """The consensus of the campaign's images per dimension, each row with the method that made it."""

    permission_classes = [IsCurator]
    serializer_class = ConsensusSerializer
    filterset_fields = ["image", "dimension"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Consensus.objects.none()
        campaign = get_object_or_404(Campaign, pk=self.kwargs["pk"])
        return selectors.campaign_consensus(campaign=campaign)

    @extend_schema(tags=TAG, summary="Consensus of a campaign (curators)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- review of ratings (curators) ----------------------------------------------------------------------------------


class AnnotationReviewView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(
        tags=TAG,
        summary="Review a rating: accept, reject or correct it (curators)",
        description="`accepted`: reviewed as it is. `rejected` (reason required): left out of the consensus, which is "
        "recomputed, until accepted again. `corrected` (reason, scores, idempotency_key): a new revision that "
        "supersedes this one, the original kept, who/when/why recorded. The id is the rating's current version. "
        "The same verdict again changes nothing (200, changed false).",
        request=ReviewInSerializer,
        responses={200: ReviewSerializer, 201: ReviewSerializer},
    )
    def post(self, request, pk: int):
        data = ReviewInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values["state"] == "corrected":
            _, review, created = services.annotation_review_correct(
                annotation_id=pk, reviewer=request.user, scores=values["scores"], reason=values["reason"],
                idempotency_key=values["idempotency_key"],
            )
            review.changed = created
            return Response(ReviewSerializer(review).data,
                            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        review, changed = services.annotation_review(annotation_id=pk, reviewer=request.user,
                                                     state=values["state"], reason=values["reason"])
        review.changed = changed
        return Response(ReviewSerializer(review).data)


class CampaignReviewQueueView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(tags=TAG, summary="A campaign's ratings to review, filtered and ordered (curators)",
                   description="The first `limit` ratings the filters keep. `order=deviation`: the largest deviation "
                   "from the consensus first, as the last consensus recomputation stored it (ratings newer than it "
                   "last). `count` is exact up to 10,000 (null and `count_capped` true beyond).",
                   parameters=[ReviewQueueQuerySerializer], responses=ReviewQueueSerializer)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        query = ReviewQueueQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        values = dict(query.validated_data)
        limit = values.pop("limit")
        annotator_id = values.pop("annotator", None)
        entries = selectors.review_queue(campaign=campaign, annotator_id=annotator_id, limit=limit, **values)
        values.pop("order")
        count = selectors.review_queue_count(campaign=campaign, annotator_id=annotator_id, **values)
        return Response(ReviewQueueSerializer({"count": count, "count_capped": count is None,
                                               "results": entries}).data)
