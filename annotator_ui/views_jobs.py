"""Resume and Cancel for every job kind (import, filter run, export, training job, pre-scoring run), one view for
all: the buttons of templates/annotator_ui/_job_controls.html post here (htmx, or a plain form without it).

The rules are the common job life cycle's (aesplatform.common.jobs): Resume a failed or stalled job, Cancel a
pending or running one. After an action the page reloads (htmx: HX-Refresh; without it: a redirect to the job's
page), so that its progress polling starts again; a refusal shows its reason in place of the buttons.
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.catalog import services as catalog_services
from aesplatform.catalog.models import ImportJob
from aesplatform.common.exceptions import ServiceError
from aesplatform.curation import services as curation_services
from aesplatform.curation.models import FilterRun
from aesplatform.datasets import services as datasets_services
from aesplatform.datasets.models import Export
from aesplatform.modeling import services as modeling_services
from aesplatform.modeling.models import PrescoreRun, TrainingJob

# kind (in the URL) -> (model, resume, cancel, the job's page)
JOB_KINDS = {
    "import": (ImportJob, lambda j: catalog_services.import_job_resume(job=j),
               lambda j: catalog_services.import_job_cancel(job=j),
               lambda j: reverse("ui:import_detail", kwargs={"pk": j.pk})),
    "filter-run": (FilterRun, lambda j: curation_services.filter_run_resume(run=j),
                   lambda j: curation_services.filter_run_cancel(run=j),
                   lambda j: reverse("ui:filter-run", args=[j.pk])),
    "export": (Export, lambda j: datasets_services.export_resume(export=j),
               lambda j: datasets_services.export_cancel(export=j),
               lambda j: reverse("ui:dataset_detail", kwargs={"pk": j.version_id})),
    "training-job": (TrainingJob, lambda j: modeling_services.training_job_resume(job=j),
                     lambda j: modeling_services.training_job_cancel(job=j),
                     lambda j: reverse("ui:training_job", kwargs={"pk": j.pk})),
    "prescore-run": (PrescoreRun, lambda j: modeling_services.prescore_run_resume(run=j),
                     lambda j: modeling_services.prescore_run_cancel(run=j),
                     lambda j: reverse("ui:prescores")),
}
JOB_KIND_OF_MODEL = {model: kind for kind, (model, *_rest) in JOB_KINDS.items()}


class JobActionView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, kind: str, pk: int, action: str):
        if kind not in JOB_KINDS or action not in ("resume", "cancel"):
            raise Http404("No such job action.")
        model, resume, cancel, page = JOB_KINDS[kind]
        job = get_object_or_404(model, pk=pk)
        try:
            (resume if action == "resume" else cancel)(job)
        except ServiceError as exc:
            job.refresh_from_db()
            return TemplateResponse(request, "annotator_ui/_job_controls.html",
                                    {"job": job, "job_kind": kind, "job_action_error": exc.message},
                                    status=200 if request.htmx else exc.status_code)
        if request.htmx:
            response = HttpResponse(status=204)
            response["HX-Refresh"] = "true"
            return response
        return redirect(page(job))
