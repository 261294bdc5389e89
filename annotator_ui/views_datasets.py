"""Dataset pages (curators): create a version from campaigns and/or imported labels, freeze it (select, split,
snapshot), read its split balance, export it (a worker job, progress by htmx polling) and download the archive
(streamed, resumable with HTTP Range, like the API).

The list page is ui:datasets (views.DatasetListView); these are the pages behind it.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.views import View
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.annotation.models import Campaign
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.models import ACTIVE_JOB_STATES
from aesplatform.datasets import limits, selectors, services
from aesplatform.datasets.api import archive_response
from aesplatform.datasets.models import DatasetKind, ExportFormat
from model_core.standard import LEVELS

from .rerender import page_with_error

EXPORTS_SHOWN = 50


class DatasetVersionForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    campaigns = forms.ModelMultipleChoiceField(
        queryset=Campaign.objects.order_by("-id"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Their consensus labels (at least the minimum number of ratings).",
    )
    include_imported_labels = forms.BooleanField(required=False, initial=True, label="Include imported labels",
                                                 help_text="Labels of HumanBeauty imports.")
    kind = forms.ChoiceField(choices=DatasetKind.choices, initial=DatasetKind.MIXED,
                             help_text="Expert refuses images without all 12 dimensions.")
    min_ratings = forms.IntegerField(min_value=limits.MIN_RATINGS_MIN, max_value=limits.MIN_RATINGS_MAX,
                                     initial=limits.MIN_RATINGS_DEFAULT, label="Minimum ratings")
    split_seed = forms.IntegerField(initial=0, label="Split seed")
    test_ratio = forms.FloatField(min_value=0.01, max_value=0.99, initial=limits.TEST_RATIO_DEFAULT, label="Test ratio",
                                  help_text="Per source; near-duplicate groups stay on one side.")
    freeze = forms.BooleanField(required=False, initial=True, label="Freeze now",
                                help_text="Select, split and snapshot right away (then immutable).")


IMAGE_MODE_LABELS = {"hardlink": "Hard links", "symlink": "Symbolic links", "copy": "Copies"}
IMAGE_PATHS_LABELS = {"relative": "Relative to the export (portable)",
                      "absolute": "Absolute server paths (this machine only)"}


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=ExportFormat.choices)
    images = forms.ChoiceField(choices=[(m, IMAGE_MODE_LABELS[m]) for m in services.IMAGE_MODES],
                               initial="hardlink", help_text="Hard links fall back to copies across file systems.")
    image_paths = forms.ChoiceField(choices=list(IMAGE_PATHS_LABELS.items()), initial="relative", required=False,
                                    label="Image paths",
                                    help_text="Training jsonl only. Relative paths keep the download portable; "
                                              "absolute paths name this server's folders.")
    archive = forms.BooleanField(required=False, initial=True, label="Archive for download")

    def options(self) -> dict:
        data = self.cleaned_data
        options = {"images": data["images"], "archive": data["archive"]}
        if data["format"] == ExportFormat.TRAINING_JSONL:
            options["image_paths"] = data["image_paths"] or "relative"
        return options


def _rows(table: dict, order=None) -> list[tuple[str, dict]]:
    keys = [k for k in (order or sorted(table)) if k in table]
    return [(k, table[k]) for k in keys]


class DatasetVersionCreateView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/datasets/new.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["form"] = kwargs.get("form") or DatasetVersionForm()
        return context

    def post(self, request, *args, **kwargs):
        form = DatasetVersionForm(request.POST)
        if form.is_valid():
            values = dict(form.cleaned_data)
            freeze = values.pop("freeze")
            values["campaigns"] = list(values["campaigns"])
            try:
                version = services.dataset_version_create(created_by=request.user, **values)
                if freeze:
                    try:
                        services.dataset_version_freeze(version=version)
                    except ServiceError as exc:
                        # the draft stays; its page says why it could not be frozen
                        request.session["dataset_freeze_error"] = exc.message
                return redirect("ui:dataset_detail", pk=version.pk)
            except ServiceError as exc:
                form.add_error(None, exc.message)
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class DatasetVersionDetailView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/datasets/detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        version = get_object_or_404(selectors.dataset_version_list(), pk=self.kwargs["pk"])
        counts = version.counts or {}
        balance = counts.get("balance") or {}
        context.update(
            version=version,
            counts=counts,
            balance=balance,
            source_rows=_rows(balance.get("by_source", {})),
            level_rows=_rows(balance.get("by_level", {}), LEVELS),
            kind_rows=_rows(balance.get("by_kind", {}), ("overall", "expert")),
            groups=balance.get("near_duplicate_groups"),
            exports=list(selectors.export_list(version=version)[:EXPORTS_SHOWN]),
            export_form=kwargs.get("export_form") or ExportForm(),
            freeze_error=kwargs.get("freeze_error") or self.request.session.pop("dataset_freeze_error", ""),
            export_error=kwargs.get("export_error", ""),
            active_states=ACTIVE_JOB_STATES,
        )
        return context


class DatasetVersionFreezeView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, pk: int):
        version = get_object_or_404(selectors.dataset_version_list(), pk=pk)
        try:
            services.dataset_version_freeze(version=version)
        except ServiceError as exc:
            return page_with_error(DatasetVersionDetailView, request, status=exc.status_code, pk=pk,
                                   freeze_error=exc.message)
        return redirect("ui:dataset_detail", pk=pk)


class ExportCreateView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, pk: int):
        version = get_object_or_404(selectors.dataset_version_list(), pk=pk)
        form = ExportForm(request.POST)
        error = ""
        if form.is_valid():
            try:
                services.export_create(version=version, format=form.cleaned_data["format"], options=form.options(),
                                       created_by=request.user)
                return redirect("ui:dataset_detail", pk=pk)
            except ServiceError as exc:
                error = exc.message
        return page_with_error(DatasetVersionDetailView, request, status=400, pk=pk, export_form=form,
                               export_error=error or "Check the export choices.")


class ExportProgressView(RoleRequiredMixin, TemplateView):
    """The row fragment htmx swaps in every second while an export runs; once it has ended it stops asking."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/datasets/_export_row.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["export"] = get_object_or_404(selectors.export_list(), pk=self.kwargs["pk"])
        context["active_states"] = ACTIVE_JOB_STATES
        return context


class ExportDownloadView(RoleRequiredMixin, View):
    """The archive, streamed and resumable (Range / If-Range), as in the API."""

    required_role = Role.CURATOR

    def get(self, request, pk: int):
        from django.http import Http404, HttpResponse
        from rest_framework.exceptions import NotFound

        export = get_object_or_404(selectors.export_list(), pk=pk)
        try:
            return archive_response(request, export)
        except NotFound as exc:
            raise Http404(str(exc.detail)) from None
        except ServiceError as exc:
            return HttpResponse(exc.message, status=exc.status_code, content_type="text/plain")

    head = get
