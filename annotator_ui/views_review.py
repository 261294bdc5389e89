"""Review and correction of ratings (issue 17).

- The review stream (`ui:review_stream`, /campaigns/<id>/review/): a curator walks through a campaign's submitted
  ratings one at a time, keyboard first (review_stream.js: j/k or the arrows move, a accepts, r rejects, c
  corrects), with filters (annotator, review status, flagged images, gold failures) and an order (submission, or
  the farthest from the consensus first). Each rating is shown beside the consensus per dimension.
- Editing one's own rating from My work (`ui:my_work_edit`, /my-work/<id>/edit/): the annotator's current values
  prefilled; saving stores a correction (same service as the API), only while the campaign is active.

Both pages post plain forms (they work without JavaScript); the writes are the annotation services'.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.annotation import limits, selectors, services
from aesplatform.annotation.models import Annotation, AnnotationReview, Campaign, CampaignState, ReviewState
from aesplatform.common.exceptions import ServiceError
from model_core.standard import DIMENSIONS, score_to_level

UI_VERSION = "review/1"


class ReviewFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, initial="unreviewed",
        choices=[("unreviewed", "Not yet reviewed"), ("all", "All"), ("accepted", "Accepted"),
                 ("corrected", "Corrected"), ("rejected", "Rejected")],
    )
    annotator = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    order = forms.ChoiceField(required=False, initial="submitted",
                              choices=[("submitted", "In submission order"), ("deviation", "Far from consensus first")])
    flagged = forms.BooleanField(required=False, label="Flagged images")
    gold_failed = forms.BooleanField(required=False, label="Gold failures")

    def __init__(self, *args, campaign: Campaign, **kwargs):
        super().__init__(*args, **kwargs)
        users = selectors.campaign_annotators(campaign=campaign)
        self.fields["annotator"].choices = [("", "Every annotator"), *[(u.pk, u.get_username()) for u in users]]

    def filters(self) -> dict:
        """The queue's keyword arguments (the defaults where the query asks nothing or something invalid)."""
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "status": data.get("status") or "unreviewed", "annotator_id": data.get("annotator"),
            "order": data.get("order") or "submitted", "flagged": bool(data.get("flagged")),
            "gold_failed": bool(data.get("gold_failed")),
        }


def _query(filters: dict, **extra) -> str:
    """The page's query string for these filters (defaults left out) and `extra` (e.g. at=<annotation id>)."""
    params = {}
    if filters["status"] != "unreviewed":
        params["status"] = filters["status"]
    if filters["annotator_id"] is not None:
        params["annotator"] = filters["annotator_id"]
    if filters["order"] != "submitted":
        params["order"] = filters["order"]
    if filters["flagged"]:
        params["flagged"] = "on"
    if filters["gold_failed"]:
        params["gold_failed"] = "on"
    params.update({k: v for k, v in extra.items() if v is not None})
    return urlencode(params)


def dimension_rows(*, scores: dict, consensus: dict | None = None) -> list[dict]:
    """One row per dimension of the standard: the rating, the consensus and the deviation (None: not available)."""
    rows = []
    for d in DIMENSIONS:
        value = scores.get(d.key)
        row = (consensus or {}).get(d.key)
        deviation = value - row.score if value is not None and row is not None else None
        rows.append({
            "key": d.key, "name": d.name, "value": value, "level": score_to_level(value) if value is not None else "",
            "consensus": row, "deviation": deviation,
            "far": deviation is not None and abs(deviation) >= selectors.REVIEW_FAR,
        })
    return rows


def scores_from_post(post, keys: list[str]) -> dict:
    """The posted score fields (score-<key>); what is not a number stays as typed, for the service to refuse."""
    found = {}
    for key in keys:
        raw = post.get(f"score-{key}", "").strip()
        try:
            found[key] = float(raw)
        except ValueError:
            found[key] = raw or None
    return found


class ReviewStreamView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/review/stream.html"

    def _campaign(self) -> Campaign:
        return get_object_or_404(Campaign, pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        campaign = self._campaign()
        form = ReviewFilterForm(self.request.GET or None, campaign=campaign,
                                initial={"status": "unreviewed", "order": "submitted"})
        filters = form.filters()
        at = self.request.GET.get("at", "")
        page = selectors.review_stream_page(campaign=campaign, at=int(at) if at.isdigit() else None, **filters)
        entry = page.entry
        context.update(campaign=campaign, form=form, queue_size=page.size, position=page.position, entry=entry,
                       count_cap=page.cap, far=selectors.REVIEW_FAR, filter_query=_query(filters))
        if filters["order"] == "deviation":
            context["order_computed_at"] = selectors.review_order_computed_at(campaign=campaign)
        if entry is None:
            return context
        annotation = Annotation.objects.select_related("annotator", "task__image").get(pk=entry.annotation_id)
        url = reverse("ui:review_stream", args=[campaign.pk])
        context.update(
            annotation=annotation,
            rows=dimension_rows(scores=entry.scores, consensus=entry.consensus),
            correct_fields=[{"key": d.key, "name": d.name, "value": entry.scores.get(d.key)}
                            for d in services.expected_dimensions(campaign.mode)],
            history=selectors.rating_history(annotation=annotation),
            review=AnnotationReview.objects.filter(annotation_id=entry.original_id).select_related("reviewed_by").first(),
            prev_url=f"{url}?{_query(filters, at=page.prev_id)}" if page.prev_id else "",
            next_url=f"{url}?{_query(filters, at=page.next_id)}" if page.next_id else "",
            next_id=page.next_id or "",
            idempotency_key=uuid.uuid4(),
            reason_max=limits.REVIEW_REASON_MAX_LENGTH,
        )
        return context

    def post(self, request, pk: int):
        campaign = self._campaign()
        filters = ReviewFilterForm(request.GET or None, campaign=campaign).filters()
        action = request.POST.get("action", "")
        annotation_id = request.POST.get("annotation", "")
        reason = request.POST.get("reason", "")
        stay = _query(filters, at=annotation_id)
        if not annotation_id.isdigit() or not Annotation.objects.filter(pk=annotation_id,
                                                                        task__campaign=campaign).exists():
            messages.error(request, "No such rating in this campaign.")
            return redirect(f"{reverse('ui:review_stream', args=[pk])}?{_query(filters)}")
        try:
            if action == "accept":
                _, changed = services.annotation_review(annotation_id=int(annotation_id), reviewer=request.user,
                                                        state=ReviewState.ACCEPTED)
                done = f"Rating #{annotation_id} accepted." if changed else f"Rating #{annotation_id} was accepted."
            elif action == "reject":
                services.annotation_review(annotation_id=int(annotation_id), reviewer=request.user,
                                           state=ReviewState.REJECTED, reason=reason)
                done = f"Rating #{annotation_id} rejected: left out of the consensus, which is being recomputed."
            elif action == "correct":
                keys = [d.key for d in services.expected_dimensions(campaign.mode)]
                correction, _, _ = services.annotation_review_correct(
                    annotation_id=int(annotation_id), reviewer=request.user,
                    scores=scores_from_post(request.POST, keys), reason=reason,
                    idempotency_key=request.POST.get("idempotency_key", ""),
                )
                done = f"Rating #{annotation_id} corrected (new revision #{correction.pk}); the consensus is being " \
                       "recomputed."
            else:
                messages.error(request, "Unknown action.")
                return redirect(f"{reverse('ui:review_stream', args=[pk])}?{stay}")
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect(f"{reverse('ui:review_stream', args=[pk])}?{stay}")
        messages.success(request, done)
        following = request.POST.get("next", "")
        query = _query(filters, at=following) if following.isdigit() else _query(filters)
        return redirect(f"{reverse('ui:review_stream', args=[pk])}?{query}")


class MyWorkEditView(RoleRequiredMixin, TemplateView):
    """An annotator corrects one of their own ratings (its newest version); others' ids answer 404."""

    required_role = Role.ANNOTATOR
    template_name = "annotator_ui/review/my_work_edit.html"

    def _annotation(self) -> Annotation:
        annotation = (
            Annotation.objects.filter(pk=self.kwargs["pk"], annotator=self.request.user)
            .select_related("task__campaign", "task__image").first()
        )
        if annotation is None:
            raise Http404("No such rating of yours.")
        return annotation

    def _editable(self, annotation: Annotation) -> str:
        """Why this rating cannot be corrected now ("" when it can)."""
        campaign = annotation.task.campaign
        if Annotation.objects.filter(supersedes=annotation).exists():
            return "This version was corrected since: edit the newest one."
        if campaign.state != CampaignState.ACTIVE:
            return f"The campaign is {campaign.state}: its ratings can no longer be changed."
        if not campaign.annotators.filter(pk=self.request.user.pk).exists():
            return "You are no longer an annotator of this campaign: its ratings can no longer be changed."
        return ""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        annotation = self._annotation()
        dims = services.expected_dimensions(annotation.task.campaign.mode)
        scores = annotation.scores_dict()
        newest = (
            Annotation.objects.filter(task_id=annotation.task_id, annotator=self.request.user,
                                      superseded_by__isnull=True).values_list("pk", flat=True).first()
        )
        context.update(
            annotation=annotation, campaign=annotation.task.campaign, blocked=self._editable(annotation),
            fields=[{"key": d.key, "name": d.name, "value": scores[d.key]} for d in dims],
            idempotency_key=uuid.uuid4(), newest_id=newest, reason_max=limits.REVIEW_REASON_MAX_LENGTH,
        )
        return context

    def post(self, request, pk: int):
        annotation = self._annotation()
        blocked = self._editable(annotation)
        if blocked:
            messages.error(request, blocked)
            return redirect("ui:my_work_edit", pk=pk)
        keys = [d.key for d in services.expected_dimensions(annotation.task.campaign.mode)]
        try:
            correction, created = services.annotation_correct(
                annotation_id=annotation.pk, annotator=request.user, scores=scores_from_post(request.POST, keys),
                idempotency_key=request.POST.get("idempotency_key", ""), reason=request.POST.get("reason", ""),
                ui_version=UI_VERSION,
            )
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("ui:my_work_edit", pk=pk)
        if created:
            messages.success(request, f"Your rating of image #{annotation.task.image_id} was corrected.")
        return redirect("ui:my_work")

