"""The API side of the common job life cycle: the fields every job serializer shows, and the resume / cancel
endpoints every job kind has (POST /api/<kind>/<id>/resume/ and /cancel/), built the same way for all five."""

from __future__ import annotations

from collections.abc import Callable

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

# Added to each job serializer's fields (with `stalled_field()` as its `stalled`).
JOB_LIFE_CYCLE_FIELDS = ["cancel_requested", "heartbeat_at", "attempts", "stalled"]


def stalled_field() -> serializers.BooleanField:
    return serializers.BooleanField(
        source="is_stalled", read_only=True,
        help_text="Running, but its worker has not been heard of for AESP_JOB_STALE_S (60 s): the worker died; the "
                  "periodic sweep queues the job again and it resumes by itself (the pages say \"stalled, resuming\").")


def job_action_view(*, model, serializer_class, service: Callable, action: str, tags: list[str],
                    permission_classes: list) -> type[APIView]:
    """POST <id>/resume/ (202) or <id>/cancel/ (200) of one job kind, calling `service(job)`."""
    noun = str(model._meta.verbose_name)
    if action == "resume":
        code = status.HTTP_202_ACCEPTED
        summary = f"Resume a failed or stalled {noun} (only what is left is done)"
        conflict = "Finished, cancelled, or running with a live worker"
    else:
        code = status.HTTP_200_OK
        summary = f"Cancel a {noun} (a running one stops at its next safe point)"
        conflict = "Already finished"

    class JobActionView(APIView):
        @extend_schema(tags=tags, summary=summary, request=None,
                       responses={code: serializer_class, 409: OpenApiResponse(description=conflict)})
        def post(self, request, pk: int):
            job = service(generics.get_object_or_404(model, pk=pk))
            return Response(serializer_class(job).data, status=code)

    JobActionView.permission_classes = permission_classes
    JobActionView.__name__ = JobActionView.__qualname__ = f"{model.__name__}{action.capitalize()}View"
    return JobActionView
