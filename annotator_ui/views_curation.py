"""Curator pages of filtering: start a run, follow it (htmx polling), tune thresholds live, review batches.

The review page is a grid of the batch's thumbnails, most uncertain first, the reasons under each; every tile
is a "keep" checkbox preset from the proposal, so the page works without JavaScript; review.js adds the keys
(arrows move, x toggles the focused image, a approves the batch) and the live count of what will be kept.
Every write goes through aesplatform.curation.services; curators only (RoleRequiredMixin: others get 403).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.models import ACTIVE_JOB_STATES
from aesplatform.common.text import counted
from aesplatform.curation import limits, selectors, services
from aesplatform.curation.models import BatchState, FilterRun, ProposedDecision, ReviewBatch

from . import charts


class CuratorView(RoleRequiredMixin):
    required_role = Role.CURATOR


class FilterRunForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    source = forms.ChoiceField(required=False, help_text="Every imported or filtered image of this source; "
                               "leave empty for every imported image.")
    clip_model_name = forms.CharField(
        max_length=100, label="CLIP model", widget=forms.TextInput(attrs={"list": "clip-models"}),
        help_text="Any open_clip model name; the table above lists the ones this installation offers.")
    clip_checkpoint = forms.CharField(
        max_length=1024, required=False, label="Checkpoint (absolute path)",
        help_text="A local weights file for that model. Empty: random weights, whose CLIP signals are noise (the "
        "proposals then come from the pixel checks only): for trying the platform out.")
    review_batch_size = forms.IntegerField(min_value=limits.REVIEW_BATCH_SIZE_MIN,
                                           max_value=limits.REVIEW_BATCH_SIZE_MAX,
                                           initial=limits.REVIEW_BATCH_SIZE_DEFAULT, label="Images per review batch")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        sources = Image.objects.filter(status__in=services.FILTERABLE_STATUSES).values_list("source", flat=True)
        self.fields["source"].choices = [("", "All imported images"), *[(s, s) for s in sorted(set(sources))]]


class FilterRunCreateView(CuratorView, TemplateView):
    template_name = "annotator_ui/curation/run_new.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        model, checkpoint = services.filter_default_model()
        context.setdefault("form", FilterRunForm(initial={"clip_model_name": model, "clip_checkpoint": checkpoint}))
        context["imported_count"] = Image.objects.filter(status=ImageStatus.IMPORTED).count()
        context["model_options"] = services.filter_model_options(images=context["imported_count"])
        return context

    def post(self, request):
        form = FilterRunForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = services.filter_run_create(
                    created_by=request.user, name=data["name"], source=data["source"] or None,
                    clip_model_name=data["clip_model_name"], clip_checkpoint=data["clip_checkpoint"],
                    review_batch_size=data["review_batch_size"],
                )
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Filter run started over {counted(run.total, 'image')}.")
                return redirect("ui:filter-run", pk=run.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


THRESHOLD_FIELDS = [
    ("min_short_side", "Shortest side at least (px)", "1"),
    ("max_aspect_ratio", "Aspect ratio at most", "0.1"),
    ("min_blur_variance", "Sharpness at least (Laplacian variance)", "1"),
    ("max_underexposed_fraction", "Under-exposed pixels at most (0–1)", "0.01"),
    ("max_overexposed_fraction", "Over-exposed pixels at most (0–1)", "0.01"),
    ("min_faces", "Faces at least", "1"),
    ("max_faces", "Faces at most", "1"),
    ("min_largest_face_fraction", "Largest face at least (fraction of the image)", "0.001"),
    ("near_duplicate_cosine", "Near duplicate from cosine", "0.001"),
]


def _threshold_rows(run: FilterRun) -> list[dict]:
    rows = [{"name": name, "label": label, "step": step, "value": run.thresholds.get(name)}
            for name, label, step in THRESHOLD_FIELDS]
    groups = run.prompt_set.get("groups", {})
    for group, rule in run.thresholds.get("clip", {}).items():
        direction, value = next(iter(rule.items()))
        label = groups.get(group, {}).get("label", group)
        rows.append({"name": f"clip.{group}.{direction}", "step": "0.01", "value": value,
                     "label": f"CLIP “{label}” {'at least' if direction == 'min' else 'at most'}"})
    return rows


def _parse_thresholds(post) -> dict:
    changes: dict = {}
    for key, raw in post.items():
        if key.startswith("clip."):
            _, group, direction = (key.split(".") + ["", ""])[:3]
            try:
                changes.setdefault("clip", {})[group] = {direction: float(raw)}
            except ValueError:
                raise ServiceError(f"CLIP threshold {group} must be a number.") from None
        elif key in dict((f[0], f) for f in THRESHOLD_FIELDS):
            try:
                number = float(raw)
            except ValueError:
                raise ServiceError(f"{key} must be a number.") from None
            changes[key] = (
                int(number) if number.is_integer() and key in ("min_short_side", "min_faces", "max_faces") else number
            )
    return changes


def _run_context(run_id: int) -> dict:
    run = selectors.filter_run_get(run_id=run_id)
    counts = selectors.filter_run_counts(run=run)
    everything_rejected = run.state == "succeeded" and counts["proposed_reject"] > 0 and not counts["proposed_keep"]
    return {
        "run": run, "counts": counts, "polling": run.state in ACTIVE_JOB_STATES,
        "everything_rejected": everything_rejected,
        "common_reject_reasons": selectors.filter_run_common_reject_reasons(run=run) if everything_rejected else [],
        "batches": list(selectors.review_batch_list(run=run)),
        "next_batch": selectors.review_batch_next_pending(run=run),
        "errors": list(selectors.filter_result_errors(run=run)[:50]),
        "threshold_rows": _threshold_rows(run),
        "clip_charts": charts.clip_histogram_charts(
            histograms=selectors.filter_run_clip_histograms(run=run), groups=run.prompt_set.get("groups", {}),
            rules=run.thresholds.get("clip", {}),
        ) if run.state == "succeeded" else [],  # as the review part: thresholds (and charts) once scoring is over
    }


class FilterRunDetailView(CuratorView, TemplateView):
    template_name = "annotator_ui/curation/run_detail.html"

    def get_template_names(self):
        if self.request.htmx and self.request.GET.get("part") == "status":
            return ["annotator_ui/curation/_run_status.html"]
        return [self.template_name]

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        if request.htmx and request.GET.get("part") == "status" and not response.context_data["polling"]:
            response["HX-Refresh"] = "true"  # scoring is over: reload once to show proposals and batches
        return response

    def get_context_data(self, **kwargs):
        get_object_or_404(FilterRun, pk=self.kwargs["pk"])
        return {**super().get_context_data(**kwargs), **_run_context(self.kwargs["pk"])}


class FilterRunThresholdsView(CuratorView, View):
    """POST new thresholds: proposals and pending batches are recomputed from the stored signals."""

    def post(self, request, pk: int):
        run = get_object_or_404(FilterRun, pk=pk)
        try:
            services.filter_run_repropose(run=run, thresholds=_parse_thresholds(request.POST))
        except ServiceError as exc:
            error, status = exc.message, exc.status_code
        else:
            error, status = "", 200
        if request.htmx:
            return TemplateResponse(request, "annotator_ui/curation/_run_review.html",
                                    {**_run_context(pk), "threshold_error": error}, status=status)
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Proposals updated from the new thresholds.")
        return redirect("ui:filter-run", pk=pk)


def _batch_gone(request, pk: int) -> TemplateResponse:
    """A review batch that no longer exists: re-proposing needed fewer batches (pending batches are refilled in
    place and keep their ids; only the surplus ones are removed). 410, with the way back, instead of a bare 404."""
    runs = selectors.filter_run_list().filter(batches__state=BatchState.PENDING).distinct()[:5]
    return TemplateResponse(request, "annotator_ui/curation/batch_gone.html", {"batch_id": pk, "runs": runs},
                            status=410)


class ReviewBatchView(CuratorView, TemplateView):
    template_name = "annotator_ui/curation/review_batch.html"

    def get(self, request, *args, **kwargs):
        if not ReviewBatch.objects.filter(pk=self.kwargs["pk"]).exists():
            return _batch_gone(request, self.kwargs["pk"])
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        batch = get_object_or_404(ReviewBatch.objects.select_related("run", "decided_by"), pk=self.kwargs["pk"])
        results = list(selectors.review_batch_results(batch=batch))
        decisions = {d.image_id: d for d in selectors.review_batch_decisions(batch=batch)}
        for result in results:
            result.keep = result.proposed_decision == ProposedDecision.KEEP
            result.decision = decisions.get(result.image_id)
        pending = [b for b in selectors.review_batch_list(run=batch.run) if b.state == BatchState.PENDING]
        return {
            **super().get_context_data(**kwargs), "batch": batch, "run": batch.run, "results": results,
            "keep_count": sum(r.keep for r in results), "reject_count": sum(not r.keep for r in results),
            "decided": batch.state == BatchState.DECIDED,
            "pending_count": len(pending), "overrides": sum(d.overrode_proposal for d in decisions.values()),
        }

    def post(self, request, pk: int):
        """The form: `keep` = the image ids ticked; every other image of the batch is rejected."""
        batch = ReviewBatch.objects.filter(pk=pk).first()
        if batch is None:
            return _batch_gone(request, pk)
        shown = {int(v) for v in request.POST.getlist("shown") if v.isdigit()}
        keep = {int(v) for v in request.POST.getlist("keep") if v.isdigit()}
        decisions = [{"image": i, "decision": "approve" if i in keep else "reject"} for i in sorted(shown)]
        try:
            services.review_batch_decide(batch=batch, decided_by=request.user, decisions=decisions)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("ui:review-batch", pk=pk)
        kept = sum(d["decision"] == "approve" for d in decisions)
        messages.success(request, f"Batch {batch.number} approved: {kept} kept, {len(decisions) - kept} rejected.")
        following = selectors.review_batch_next_pending(run=batch.run, after=batch.number)
        return redirect(reverse("ui:review-batch", args=[following.pk]) if following else
                        reverse("ui:filter-run", args=[batch.run_id]))

