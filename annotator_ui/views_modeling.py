"""Modeling pages (curators): start a training job and follow it (progress, ETA, loss curve, log; htmx polls while
it runs), a model's evaluation report, charts and plots, compare it with the promoted model, promote it, and
pre-scores (runs, histograms, sortable list). Charts: annotator_ui/charts.py shapes the data, Chart.js draws it.
The list page is ui:models (views.ModelListView).
"""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.views import View
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.models import ACTIVE_JOB_STATES, DIMENSION_FIELDS
from aesplatform.datasets.models import DatasetState, DatasetVersion
from aesplatform.modeling import limits, presets, selectors, services
from aesplatform.modeling.models import ModelBackend, ModelVersion
from model_core.standard import DIMENSIONS

from . import charts
from .rerender import page_with_error

HEADS = ("lm", "regression", "expert", "metavoter")
METRICS = ("plcc", "srcc", "krcc", "rmse", "mae")
PLOT_FILES = ("scatter.png", "confusion.png", "dimensions.png", "per_dimension.png", "residuals.png")


def _report_rows(metrics: dict) -> list[dict]:
    overall = (metrics or {}).get("overall") or {}
    return [{"head": h, **{m: (overall.get(h) or {}).get(m) for m in METRICS}} for h in HEADS if h in overall]


# The reference evaluation script's columns (model_core.evaluation.REFERENCE_COLUMNS) as the page heads them.
REFERENCE_COLUMNS = (("accuracy_ref", "Accuracy"), ("mean_precision_ref", "mean Precision"),
                     ("mean_recall_ref", "mean Recall"), ("mean_f1_ref", "mean F1"), ("plcc_abs", "|PLCC|"),
                     ("srcc_abs", "|SRCC|"), ("krcc_abs", "|KRCC|"), ("rmse_ref", '"mse" √(MSE+1e-8)'),
                     ("rmae_ref", '"mae" √(MAE+1e-8)'))


def _reference_rows(metrics: dict) -> list[dict]:
    """One row per head of the reference script's metrics (report["reference"]); None shows as not available."""
    reference = (metrics or {}).get("reference") or {}
    return [{"head": h, "values": [(reference.get(h) or {}).get(k) for k, _ in REFERENCE_COLUMNS]}
            for h in HEADS if h in reference]


def _holdout(metrics: dict) -> dict | None:
    """The held-out figures of training (records the heads never trained on; the MetaVoter's measured out of
    fit), or None for a report without them."""
    holdout = (metrics or {}).get("holdout") or {}
    plcc = holdout.get("overall_plcc") or {}
    if not plcc:
        return None
    measured = holdout.get("metavoter_measured") or {}
    return {"rows": [{"head": h, "plcc": plcc.get(h)} for h in HEADS if h in plcc], "n": holdout.get("n"),
            "method": measured.get("method"), "folds": measured.get("folds"), "detail": measured.get("detail", "")}


def _dimension_rows(metrics: dict) -> list[dict]:
    dims = (metrics or {}).get("dimensions") or {}
    rows = []
    for d in DIMENSIONS:
        entry = dims.get(d.key) or dims.get(d.name) or {}
        if entry:
            rows.append({"name": d.name, "plcc": entry.get("plcc"), "srcc": entry.get("srcc"), "n": entry.get("n")})
    return rows


# --- training jobs ----------------------------------------------------------------------------------------------


class TrainingJobForm(forms.Form):
    dataset_version = forms.ModelChoiceField(queryset=DatasetVersion.objects.filter(state=DatasetState.FROZEN)
                                             .order_by("-id"), help_text="A frozen version.",
                                             empty_label="Choose a frozen dataset version")
    preset = forms.ChoiceField(choices=[(p, f"{p}: {presets.PRESETS[p]['description']}") for p in presets.PRESETS])
    epochs = forms.FloatField(required=False, min_value=0.01, help_text="Default: the preset's.")
    max_steps = forms.IntegerField(required=False, min_value=1, help_text="Overrides epochs.")
    processes = forms.IntegerField(required=False, min_value=1, label="Processes",
                                   help_text="Data-parallel training processes on the worker (default 1).")
    backbone_path = forms.CharField(required=False, max_length=1024, label="Backbone path",
                                    help_text="LoRA presets: a local InternVL directory.")
    init_model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.filter(backend=ModelBackend.MODEL_CORE).order_by("-id"), required=False,
        label="Start from model", empty_label="None (the preset's backbone)",
        help_text="Instead of a backbone: a registered model_core model (e.g. InternVL2 / HumanAesExpert weights "
                  "converted with python -m model_core convert).")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.AESP_TRAINING_MAX_PROCESSES  # read when the form is built, not when the module loads
        self.fields["processes"].widget.attrs["max"] = limit
        self.fields["processes"].help_text = (
            f"Data-parallel training processes on the worker: 1 to {limit} here (AESP_TRAINING_MAX_PROCESSES). "
            "The preset's batch size is shared out among them and must divide.")

    def overrides(self) -> dict:
        data = self.cleaned_data
        out = {k: data[k] for k in ("epochs", "max_steps", "processes") if data.get(k) is not None}
        if data.get("backbone_path"):
            out["backbone_path"] = data["backbone_path"].strip()
        if data.get("init_model_version") is not None:
            out["init_model_version"] = data["init_model_version"].pk
        return out


class TrainingJobCreateView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/modeling/job_new.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["form"] = kwargs.get("form") or TrainingJobForm(initial={"preset": "tiny-cpu"})
        return context

    def post(self, request, *args, **kwargs):
        form = TrainingJobForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                job = services.training_job_create(dataset_version=form.cleaned_data["dataset_version"],
                                                   preset=form.cleaned_data["preset"], config=form.overrides(),
                                                   created_by=request.user)
                return redirect("ui:training_job", pk=job.pk)
            except ServiceError as exc:
                form.add_error(None, exc.message)
                status = exc.status_code
        return self.render_to_response(self.get_context_data(form=form), status=status)


def _job_context(job) -> dict:
    metrics = job.metrics[-1] if job.metrics else {}
    return {
        "job": job, "active_states": ACTIVE_JOB_STATES, "loss_chart": charts.loss_chart(job.loss_curve),
        "percent": round(100 * job.step / job.total_steps) if job.total_steps else 0,
        "report_rows": _report_rows(metrics.get("report") or {}),
        "reference_rows": _reference_rows(metrics.get("report") or {}),
        "reference_columns": [label for _, label in REFERENCE_COLUMNS],
        "report_meta": (metrics.get("report") or {}).get("meta") or {},
        "holdout": _holdout(metrics),
        "model_version": getattr(job, "model_version", None) if hasattr(job, "model_version") else None,
        "log_tail": "\n".join(job.log.splitlines()[-40:]),
    }


class TrainingJobDetailView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/modeling/job_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = get_object_or_404(selectors.training_job_list(), pk=self.kwargs["pk"])
        context.update(_job_context(job), cancel_error=kwargs.get("cancel_error", ""))
        return context


class TrainingJobLiveView(TrainingJobDetailView):
    """The fragment htmx swaps in every 2 s while the job is pending or running; then it stops asking."""

    template_name = "annotator_ui/modeling/_job_live.html"


class TrainingJobCancelView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, pk: int):
        job = get_object_or_404(selectors.training_job_list(), pk=pk)
        try:
            services.training_job_cancel(job=job)
        except ServiceError as exc:
            return page_with_error(TrainingJobDetailView, request, status=exc.status_code, pk=pk,
                                   cancel_error=exc.message)
        return redirect("ui:training_job", pk=pk)


# --- models -----------------------------------------------------------------------------------------------------


class ModelDetailView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/modeling/model_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        model = get_object_or_404(selectors.model_version_list(), pk=self.kwargs["pk"])
        plots = [name for name in PLOT_FILES if model.report_dir and (Path(model.report_dir) / name).is_file()]
        report_rows, dimension_rows = _report_rows(model.metrics), _dimension_rows(model.metrics)
        context.update(model=model, report_rows=report_rows, dimension_rows=dimension_rows,
                       heads_chart=charts.head_metrics_chart(report_rows),
                       dimensions_chart=charts.dimension_metrics_chart(dimension_rows),
                       reference_rows=_reference_rows(model.metrics),
                       reference_columns=[label for _, label in REFERENCE_COLUMNS],
                       report_meta=(model.metrics or {}).get("meta") or {}, holdout=_holdout(model.metrics),
                       promoted=selectors.model_version_promoted(), plots=plots,
                       can_compare=selectors.model_version_list().exclude(pk=model.pk).exists(),
                       promote_error=kwargs.get("promote_error", ""))
        return context


class ModelPlotView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def get(self, request, pk: int, name: str):
        model = get_object_or_404(selectors.model_version_list(), pk=pk)
        if name not in PLOT_FILES or not model.report_dir:
            raise Http404("No such plot.")
        path = Path(model.report_dir) / name
        if not path.is_file():
            raise Http404("No such plot.")
        return FileResponse(path.open("rb"), content_type="image/png")


class ModelPromoteView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request, pk: int):
        model = get_object_or_404(selectors.model_version_list(), pk=pk)
        try:
            services.model_version_promote(model_version=model, user=request.user)
        except ServiceError as exc:
            return page_with_error(ModelDetailView, request, status=exc.status_code, pk=pk, promote_error=exc.message)
        return redirect("ui:model_detail", pk=pk)


class ModelCompareView(RoleRequiredMixin, TemplateView):
    """Two models side by side, per head: this one against `?with=<id>`, by default against the promoted model, or
    when this one is the promoted one, against the model registered before it (else the newest other). A model is
    never compared with itself: with no other model the page asks to choose one."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/modeling/compare.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        models = selectors.model_version_list()
        a = get_object_or_404(models, pk=self.kwargs["pk"])
        others = models.exclude(pk=a.pk)
        other = self.request.GET.get("with")
        if other:
            if not other.isdigit():
                raise Http404("No such model.")
            b = get_object_or_404(models, pk=int(other))
            if b.pk == a.pk:
                b = None  # the same model: nothing to compare; the page asks to choose another
        else:
            b = (others.filter(promoted=True).first() or others.filter(pk__lt=a.pk).first() or others.first())
        rows = []
        if b is not None:
            ra = {r["head"]: r for r in _report_rows(a.metrics)}
            rb = {r["head"]: r for r in _report_rows(b.metrics)}
            for head in HEADS:
                for metric in ("plcc", "srcc", "rmse"):
                    va, vb = (ra.get(head) or {}).get(metric), (rb.get(head) or {}).get(metric)
                    if va is None and vb is None:
                        continue
                    better = None
                    if va is not None and vb is not None and va != vb:
                        better = "a" if (va > vb) == (metric != "rmse") else "b"
                    rows.append({"head": head, "metric": metric, "a": va, "b": vb, "better": better})
        context.update(a=a, b=b, rows=rows, choices=others[:100],
                       compare_chart=charts.compare_chart(rows, name_a=a.name, name_b=b.name) if b else None)
        return context


# --- pre-scores -------------------------------------------------------------------------------------------------

PRESCORES_SHOWN = 100


class PrescoreRunForm(forms.Form):
    max_tiles = forms.IntegerField(min_value=limits.MAX_TILES_MIN, max_value=limits.MAX_TILES_MAX, required=False,
                                   widget=forms.NumberInput(attrs={"placeholder": "auto", "title": (
                                       "Empty: 1 for a model trained here, 12 (the reference's) for a released "
                                       "HumanAesExpert checkpoint")}))
    batch_size = forms.IntegerField(min_value=limits.BATCH_SIZE_MIN, max_value=limits.BATCH_SIZE_MAX,
                                    initial=limits.BATCH_SIZE_DEFAULT)


class PrescoresView(RoleRequiredMixin, TemplateView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/modeling/prescores.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        raw = self.request.GET.get("model")
        model = None
        if raw and raw.isdigit():
            model = get_object_or_404(selectors.model_version_list(), pk=int(raw))
        else:
            model = selectors.model_version_promoted()
        ordering = self.request.GET.get("order", "-metavoter_score")
        if ordering not in selectors.PRESCORE_ORDERINGS:
            ordering = "-metavoter_score"
        histograms, rows = [], []
        if model is not None:
            if model.prescore_histograms is None:  # none stored yet (no run of it ended since): computed once
                services.prescore_histograms_refresh(model_version=model)
            hist = model.prescore_histograms
            labels = {"metavoter_score": "MetaVoter score", "lm_score": "LM head",
                      "regression_score": "Regression head", "uncertainty": "Uncertainty"}
            histograms = [{"label": labels[k], "chart": None if v is None else charts.score_histogram_chart(
                chart_id=f"chart-{k}", name=labels[k], counts=v, y_title="Images",
                x_title="Uncertainty" if k == "uncertainty" else "Score")} for k, v in hist.items()]
            rows = list(selectors.prescore_list(model_version=model, ordering=ordering)
                        .select_related("image")[:PRESCORES_SHOWN])
        context.update(model=model, histograms=histograms, rows=rows, ordering=ordering,
                       orderings=selectors.PRESCORE_ORDERINGS, runs=list(selectors.prescore_run_list()[:20]),
                       form=kwargs.get("form") or PrescoreRunForm(), run_error=kwargs.get("run_error", ""),
                       active_states=ACTIVE_JOB_STATES, overall_key=DIMENSION_FIELDS[-1])
        return context


class PrescoreRunCreateView(RoleRequiredMixin, View):
    required_role = Role.CURATOR

    def post(self, request):
        form = PrescoreRunForm(request.POST)
        error, status = "Check the pre-scoring choices.", 400
        if form.is_valid():
            try:
                services.prescore_run_create(created_by=request.user, **form.cleaned_data)
                return redirect("ui:prescores")
            except ServiceError as exc:
                error, status = exc.message, exc.status_code
        return page_with_error(PrescoresView, request, status=status, form=form, run_error=error)
