"""The import pages (curators): start an import (drag-and-drop upload, or a server folder / zip / HumanBeauty
path), follow a job's progress (htmx polls a fragment while it runs) and read its per-file report.

Uploads go from the browser straight to the API (`POST /api/imports/`, see static js/imports.js) so that the
page can show upload progress; the server-path form posts here and calls the same service.
"""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.catalog import selectors, services
from aesplatform.catalog.models import ImportKind, ImportOutcome
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.models import ACTIVE_JOB_STATES

JOBS_PAGE_SIZE = 20
ITEMS_PAGE_SIZE = 50
SERVER_PATH_KINDS = [(k, ImportKind(k).label) for k in (ImportKind.FOLDER, ImportKind.ZIP, ImportKind.HUMANBEAUTY)]


class ServerPathImportForm(forms.Form):
    kind = forms.ChoiceField(choices=SERVER_PATH_KINDS, initial=ImportKind.FOLDER)
    path = forms.CharField(max_length=4096, help_text="A folder or zip file inside the import folders of the server.")
    source_name = forms.CharField(max_length=200, required=False, label="Source name",
                                  help_text="Recorded as the images' source; HumanBeauty records keep their own.")


class ImportListView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/imports/list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        jobs = Paginator(selectors.import_job_list(), JOBS_PAGE_SIZE).get_page(self.request.GET.get("page"))
        context.update(
            jobs=jobs, page_obj=jobs, form=kwargs.get("form") or ServerPathImportForm(),
            allowed_roots=[str(root) for root in selectors.import_allowed_roots()],
        )
        return context

    def post(self, request, *args, **kwargs):
        form = ServerPathImportForm(request.POST)
        if form.is_valid():
            try:
                job = services.import_job_create(created_by=request.user, **form.cleaned_data)
            except ServiceError as exc:
                form.add_error("path", exc.message)
            else:
                return redirect("ui:import_detail", pk=job.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class ImportDetailView(RoleRequiredMixin, TemplateView):
    """The job's page. While the job runs, htmx asks for the report part (`?part=report`) every 2 s, so that its
    rows follow the progress; the part rendered once the job has ended carries no polling: it stops by itself."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/imports/detail.html"

    def get_template_names(self):
        if self.request.htmx and self.request.GET.get("part") == "report":
            return ["annotator_ui/imports/_report.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = get_object_or_404(selectors.import_job_list(), pk=self.kwargs["pk"])
        outcome = self.request.GET.get("outcome", "")
        items = selectors.import_job_items(job=job)
        if outcome in ImportOutcome.values:
            items = items.filter(outcome=outcome)
        else:
            outcome = ""
        paginator = Paginator(items, ITEMS_PAGE_SIZE)
        stored = selectors.import_job_item_count(job=job, outcome=outcome)
        if stored is not None:
            paginator.count = stored  # the finished job's own counters: exact, without counting its items
        page = paginator.get_page(self.request.GET.get("page"))
        context.update(job=job, items=page, page_obj=page, outcome=outcome, outcomes=ImportOutcome.values,
                       active=job.state in ACTIVE_JOB_STATES)
        return context


class ImportProgressView(RoleRequiredMixin, TemplateView):
    """The progress fragment htmx swaps in every second; once the job has ended it stops asking."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/imports/_progress.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = get_object_or_404(selectors.import_job_list(), pk=self.kwargs["pk"])
        context.update(job=job, active=job.state in ACTIVE_JOB_STATES)
        return context
