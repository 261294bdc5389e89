"""Curator pages of a campaign: create, dashboard (progress, agreement, plots, annotator table), state, CSV export.

The campaign list itself is `ui:campaigns` (views.CampaignListView); these pages hang below it.
Charts: the data is shaped by annotator_ui/charts.py and drawn in the browser by Chart.js (vendored, no CDN).
"""

from __future__ import annotations

import csv

from django import forms
from django.contrib import messages
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View
from django.views.generic import FormView, TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.annotation import limits, selectors, services
from aesplatform.annotation.consensus import DEFAULT_METHOD as DEFAULT_CONSENSUS_METHOD
from aesplatform.annotation.models import Campaign, CampaignMode, CampaignState, ConsensusMethod, TaskOrder
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.text import counted

from . import charts

MAX_IMAGES_FROM_FORM = 200_000


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=limits.CAMPAIGN_NAME_MAX_LENGTH)
    mode = forms.ChoiceField(choices=CampaignMode.choices, initial=CampaignMode.EXPERT)
    redundancy = forms.IntegerField(min_value=limits.REDUNDANCY_MIN, max_value=limits.REDUNDANCY_MAX,
                                    initial=limits.REDUNDANCY_DEFAULT, help_text="Distinct annotators per image.")
    gold_ratio = forms.FloatField(
        min_value=limits.GOLD_RATIO_MIN, max_value=limits.GOLD_RATIO_MAX, initial=limits.GOLD_RATIO_DEFAULT,
        help_text="Share of images with an imported reference label, mixed in unannounced.",
    )
    image_source = forms.ChoiceField(required=False, help_text="Approved images of this source only (blank: any).")
    image_limit = forms.IntegerField(min_value=1, max_value=MAX_IMAGES_FROM_FORM, initial=500,
                                     help_text="At most this many images.")
    annotators = forms.ModelMultipleChoiceField(
        queryset=None, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Who may take this campaign's tasks. Demo-loop accounts are not listed.")
    instructions = forms.CharField(widget=forms.Textarea, required=False)
    show_prescores = forms.BooleanField(required=False, label="Show pre-scores to annotators",
                                        help_text="Off by default, to avoid anchoring.")
    task_order = forms.ChoiceField(
        choices=TaskOrder.choices, initial=TaskOrder.RANDOM,
        help_text="Active learning orders by the promoted model's pre-scores; on our benchmark it saved no labels "
                  "over random order (docs/active-learning.md).",
    )
    lease_seconds = forms.IntegerField(min_value=limits.LEASE_SECONDS_MIN, max_value=limits.LEASE_SECONDS_MAX,
                                       initial=limits.LEASE_SECONDS_DEFAULT, label="Lease (seconds)",
                                       help_text="How long a task stays with an annotator before it goes back.")
    consensus_method = forms.ChoiceField(
        choices=ConsensusMethod.choices, initial=DEFAULT_CONSENSUS_METHOD, required=False,
        help_text="How the ratings become one score per image; can be changed later (the consensus is recomputed).",
    )
    activate = forms.BooleanField(required=False, initial=True, help_text="Start handing out tasks right away.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotators"].queryset = selectors.annotator_candidates()
        sources = (
            Image.objects.filter(status=ImageStatus.APPROVED).order_by("source")
            .values_list("source", flat=True).distinct()[:200]
        )
        self.fields["image_source"].choices = [("", "Any source"), *[(s, s) for s in sources]]


class CampaignCreateView(RoleRequiredMixin, FormView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/campaigns/new.html"
    form_class = CampaignForm

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["approved_count"] = Image.objects.filter(status=ImageStatus.APPROVED).count()
        return context

    def form_valid(self, form):
        data = form.cleaned_data
        images = Image.objects.filter(status=ImageStatus.APPROVED)
        if data["image_source"]:
            images = images.filter(source=data["image_source"])
        image_ids = list(images.order_by("id").values_list("id", flat=True)[: data["image_limit"]])
        try:
            campaign = services.campaign_create(
                name=data["name"], mode=data["mode"], created_by=self.request.user, image_ids=image_ids,
                redundancy=data["redundancy"], gold_ratio=data["gold_ratio"], show_prescores=data["show_prescores"],
                instructions=data["instructions"], annotators=list(data["annotators"]), task_order=data["task_order"],
                lease_seconds=data["lease_seconds"],
                consensus_method=data["consensus_method"] or DEFAULT_CONSENSUS_METHOD,
                state=CampaignState.ACTIVE if data["activate"] else CampaignState.DRAFT,
            )
        except ServiceError as exc:
            form.add_error(None, exc.message)
            return self.form_invalid(form)
        messages.success(self.request, f"Campaign “{campaign.name}” created with {counted(len(image_ids), 'image')}.")
        return redirect("ui:campaign_detail", pk=campaign.pk)


class CampaignDashboardView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/campaigns/detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        campaign = get_object_or_404(Campaign.objects.select_related("created_by"), pk=kwargs["pk"])
        # the statistics as the worker stored them (their time shown): computing them per request does not scale
        stored = selectors.campaign_stats_stored(campaign=campaign)
        if stored is None:  # none yet (a campaign from before they were stored): computed once, now
            services.campaign_snapshot_refresh(campaign=campaign)
            stored = selectors.campaign_stats_stored(campaign=campaign)
        stats, stats_as_of = stored
        context.update(
            campaign=campaign,
            stats=stats,
            stats_as_of=stats_as_of,
            histogram_charts=charts.campaign_histogram_charts(stats.dimensions),
            agreement_chart=charts.agreement_chart(stats.dimensions),
            throughput_chart=charts.throughput_chart(stats.throughput),
            throughput_total=sum(n for _, n in stats.throughput),
            transitions=sorted(services.ALLOWED_TRANSITIONS.get(campaign.state, set())),
            annotator_names=", ".join(campaign.annotators.order_by("username").values_list("username", flat=True)),
            raters=selectors.campaign_raters(campaign=campaign),
        )
        return context


class CampaignStateView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        state = request.POST.get("state", "")
        if state not in CampaignState.values:
            messages.error(request, "Unknown state.")
        else:
            try:
                services.campaign_update(campaign=campaign, data={"state": state})
                messages.success(request, f"The campaign is now {state}.")
            except ServiceError as exc:
                messages.error(request, exc.message)
        return redirect(reverse("ui:campaign_detail", args=[pk]))


class _Echo:
    def write(self, value):
        return value


class CampaignCsvView(RoleRequiredMixin, View):
    """Raw annotations of a campaign as CSV, streamed (constant memory whatever the size)."""

    required_role = Role.CURATOR

    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        writer = csv.writer(_Echo())
        rows = (writer.writerow(row) for row in selectors.annotation_csv_rows(campaign=campaign))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-annotations.csv"'
        return response
