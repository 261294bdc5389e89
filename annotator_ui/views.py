"""Server-rendered pages: the home page of each role and the list pages behind the navigation.

Every view reads through annotator_ui.selectors; access is by role (accounts.permissions.RoleRequiredMixin:
anonymous users go to the login page, users without the role get 403).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.generic import ListView, TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role, user_has_role
from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus

from . import selectors
from .views_explorer import GALLERY_CHOICE_FILTERS, gallery_state

LIST_PAGE_SIZE = 25


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        """Outside production, when demo_setup's users exist, the page says which one to try first."""
        context = super().get_context_data(**kwargs)
        context["demo_users"] = not settings.PRODUCTION and selectors.demo_users_exist()
        return context


class LogoutView(auth_views.LogoutView):
    """Logging out also forgets what this browser kept for the user: the rating drafts in localStorage (app.js
    removes them too, for plain-HTTP sites where browsers ignore this header)."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        response["Clear-Site-Data"] = '"storage"'
        return response


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response (AXES_LOCKOUT_CALLABLE) for the form and admin logins: the login page again,
    saying why and for how long, with 429 Too Many Requests."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "locked_out": True, "cooloff_minutes": minutes, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)


def campaign_counts_filled(campaigns, *, annotator=None) -> list:
    """`campaigns` (from selectors.campaign_list or annotator_active_campaigns) as a list, those without stored
    counts yet (made before counts were stored) given theirs: computed once for all of them in a fixed number of
    statements, and stored. With `annotator`, each also gets `my_submitted`, that user's ratings in it."""
    campaigns = list(campaigns)
    if annotator is not None:
        mine = selectors.annotator_submitted_by_campaign(user=annotator, campaign_ids=[c.pk for c in campaigns])
        for c in campaigns:
            c.my_submitted = mine.get(c.pk, 0)
    missing = [c for c in campaigns if c.counts_as_of is None]
    if missing:
        filled = annotation_services.campaign_snapshots_fill(campaign_ids=[c.pk for c in missing])
        for c in missing:
            snapshot = filled[c.pk]
            c.task_total, c.task_done, c.annotation_count = snapshot.tasks, snapshot.tasks_done, snapshot.annotations
            c.counts_as_of = snapshot.computed_at
    return campaigns


class HomeView(LoginRequiredMixin, TemplateView):
    """One page, three depths: annotators see their campaigns, curators the catalog, admins also the users."""

    template_name = "annotator_ui/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        if user_has_role(user, Role.ANNOTATOR):
            context["campaigns"] = campaign_counts_filled(selectors.annotator_active_campaigns(user=user)[:10],
                                                          annotator=user)
            if not user_has_role(user, Role.CURATOR):  # a curator's home is about the catalog
                context["summary"] = selectors.annotator_work_summary(user=user)
        if user_has_role(user, Role.CURATOR):
            counts = selectors.image_status_counts()
            context["image_counts"] = [(ImageStatus(s).label, s, n) for s, n in counts.items()]
            context["image_total"] = sum(counts.values())
            context["import_jobs"] = selectors.import_jobs_recent(limit=5)
            context["filter_runs"] = selectors.filter_runs_recent(limit=5)
            context["first_steps"] = first_steps(user=user, image_counts=counts)
        if user_has_role(user, Role.ADMIN):
            context["user_counts"] = selectors.user_counts_by_role()
        return context


def first_steps(*, user, image_counts: dict[str, int]) -> list[dict]:
    """The home page's "getting started": the steps from images to a model, each with its link, whether it has been
    done on this installation, and a line saying where it stands; the first step not done is marked next."""
    state = selectors.first_steps_state(user=user)
    total = sum(image_counts.values())
    usable = image_counts.get(ImageStatus.APPROVED, 0) + image_counts.get(ImageStatus.IN_CAMPAIGN, 0)
    waiting = image_counts.get(ImageStatus.IMPORTED, 0)
    if state["next_batch"]:
        filter_url, filter_action = reverse("ui:review-batch", args=[state["next_batch"]]), "Review the next batch"
    elif waiting:
        filter_url, filter_action = reverse("ui:filter-run-new"), "Start a filter run"
    else:
        filter_url, filter_action = reverse("ui:filter_runs"), "Filter runs"
    annotate_url = reverse("ui:annotate") if user_has_role(user, Role.ANNOTATOR) else reverse("ui:campaigns")
    steps = [
        {"key": "import", "title": "Import images", "done": total > 0, "url": reverse("ui:imports"),
         "action": "Import images",
         "detail": f"{total} image{pluralize(total)} in the catalog." if total else
         "Upload files, or import a server folder, a zip or a HumanBeauty data set."},
        {"key": "filter", "title": "Filter and approve", "done": usable > 0, "url": filter_url, "action": filter_action,
         "detail": f"{usable} approved for campaigns; {waiting} waiting to be filtered." if total else
         "A filter run proposes keep or reject; a curator approves the images a batch at a time."},
        {"key": "campaign", "title": "Start a campaign", "done": state["has_campaign"],
         "url": reverse("ui:campaign_new"), "action": "New campaign",
         "detail": "A campaign asks annotators to rate approved images on the overall score or all 12 dimensions."},
        {"key": "annotate", "title": "Annotate", "done": state["has_annotation"], "url": annotate_url,
         "action": "Rate images",
         "detail": "Annotators rate the campaign's images; their ratings agree into consensus labels."},
        {"key": "dataset", "title": "Build a dataset", "done": state["has_dataset"], "url": reverse("ui:datasets"),
         "action": "Datasets", "detail": "A frozen dataset version with train/validation/test splits, exportable."},
        {"key": "train", "title": "Train a model", "done": state["has_model"], "url": reverse("ui:training_job_new"),
         "action": "Train", "detail": "Train a scorer on a dataset version and compare it with the reference model."},
    ]
    for step in steps:
        if not step["done"]:
            step["next"] = True
            break
    return steps


def pluralize(n: int) -> str:
    return "" if n == 1 else "s"


class AnnotateView(RoleRequiredMixin, ListView):
    required_role = Role.ANNOTATOR
    template_name = "annotator_ui/annotate.html"
    context_object_name = "campaigns"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.annotator_active_campaigns(user=self.request.user)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["campaigns"] = campaign_counts_filled(context["campaigns"], annotator=self.request.user)
        return context


class MyWorkView(RoleRequiredMixin, ListView):
    required_role = Role.ANNOTATOR
    template_name = "annotator_ui/my_work.html"
    context_object_name = "annotations"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.annotator_annotations(user=self.request.user)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["summary"] = selectors.annotator_work_summary(user=self.request.user)
        return context


class ImageGalleryView(RoleRequiredMixin, TemplateView):
    """Thumbnails newest first (or sorted by a signal), filtered by status, source and the image signals
    (annotator_ui/gallery.py), paged by keyset (stays fast at millions of rows). A tile opens the image's page.

    With htmx, "Show older" appends the next page to the grid (the pager is swapped out of band); without
    JavaScript the same links load whole pages.
    """

    required_role = Role.CURATOR
    template_name = "annotator_ui/images.html"
    partial_template_name = "annotator_ui/_gallery_more.html"

    def get_template_names(self):
        if self.request.htmx and not self.request.htmx.boosted:
            return [self.partial_template_name]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form, filters, query, cursors = gallery_state(self.request)
        page = selectors.image_gallery_page(filters=filters, after=cursors["after"], before=cursors["before"])
        context.update(
            form=form,
            page=page,
            filtered=bool({k for k in query if k != "sort"}),
            status=filters.status,
            source=filters.source,
            sort=filters.sort,
            base_query=query,
            query_string=urlencode(query),
            status_choices=ImageStatus.choices,
            source_names=selectors.import_source_names(),
            thumbnail_path="/api/images/{id}/thumbnail/",
            choice_filters=GALLERY_CHOICE_FILTERS,
            more_open=bool(set(query) - {"status", "source", "sort", "selection"}),
        )
        return context


class FilterRunListView(RoleRequiredMixin, ListView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/filter_runs.html"
    context_object_name = "runs"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.filter_run_list()


class CampaignListView(RoleRequiredMixin, ListView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/campaigns.html"
    context_object_name = "campaigns"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.campaign_list()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["campaigns"] = campaign_counts_filled(context["campaigns"])
        return context


class DatasetListView(RoleRequiredMixin, ListView):
    required_role = Role.CURATOR
    template_name = "annotator_ui/datasets.html"
    context_object_name = "versions"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.dataset_version_list()


class ModelListView(RoleRequiredMixin, ListView):
    """The model registry (paged by ?page=) and the training jobs (paged by ?jobs=)."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/models.html"
    context_object_name = "models"
    paginate_by = LIST_PAGE_SIZE

    def get_queryset(self):
        return selectors.model_version_list()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        jobs = Paginator(selectors.training_job_list(), LIST_PAGE_SIZE).get_page(self.request.GET.get("jobs"))
        context["jobs_page"] = jobs
        return context

