"""The image explorer (issue 17, point 5): the gallery's filters and sorts, a detail page per image, the embedding
map with its lasso.

Curators and admins only, like the gallery: the detail page shows every annotator's labels side by side, which an
annotator must not see (they rate blind to each other; their own ratings are on "My work").
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.generic import TemplateView, View

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common.exceptions import ServiceError

from . import explorer, gallery


def _cursor(value: str):
    """An id (sorted by id) or a "<key>_<id>" cursor (sorted by a signal)."""
    if not value:
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    if gallery.parse_cursor(value) is None:
        raise ValidationError("Not a page cursor.")
    return value


class GalleryFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *ImageStatus.choices], required=False)
    source = forms.CharField(required=False, max_length=200)
    import_job = forms.IntegerField(required=False, min_value=1)
    dataset_version = forms.IntegerField(required=False, min_value=1)
    consensus_min = forms.FloatField(required=False, min_value=0, max_value=1)
    consensus_max = forms.FloatField(required=False, min_value=0, max_value=1)
    ratings_min = forms.IntegerField(required=False, min_value=0, max_value=10_000)
    ratings_max = forms.IntegerField(required=False, min_value=0, max_value=10_000)
    prescore_min = forms.FloatField(required=False, min_value=0, max_value=1)
    prescore_max = forms.FloatField(required=False, min_value=0, max_value=1)
    proposal = forms.ChoiceField(choices=[("", "Any"), *gallery.PROPOSALS], required=False)
    review = forms.ChoiceField(choices=[("", "Any"), *gallery.REVIEWS], required=False)
    duplicates = forms.ChoiceField(choices=[("", "Any"), *gallery.DUPLICATES], required=False)
    group = forms.IntegerField(required=False)
    selection = forms.IntegerField(required=False, min_value=1)
    sort = forms.ChoiceField(choices=[(k, v[0]) for k, v in gallery.SORTS.items()], required=False)
    after = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    # what a link to another page of the same gallery carries (not the page cursors)
    QUERY_FIELDS = ("status", "source", "import_job", "dataset_version", "consensus_min", "consensus_max",
                    "ratings_min", "ratings_max", "prescore_min", "prescore_max", "proposal", "review", "duplicates",
                    "group", "selection", "sort")

    def clean_after(self):
        return _cursor(self.cleaned_data.get("after") or "")

    def clean_source(self):
        return (self.cleaned_data.get("source") or "").strip()

    def clean(self):
        data = super().clean()
        for name in ("consensus", "ratings", "prescore"):
            low, high = data.get(f"{name}_min"), data.get(f"{name}_max")
            if low is not None and high is not None and low > high:
                self.add_error(f"{name}_max", "Below the minimum.")
        return data


GALLERY_CHOICE_FILTERS = (("proposal", "Filter proposal"), ("review", "Review"), ("duplicates", "Near duplicates"))


def gallery_state(request) -> tuple[GalleryFilterForm, gallery.GalleryFilters, dict, dict]:
    """The gallery form of this request, the filters it gives, the query to carry to other pages (only valid,
    non-empty values) and the cursors. Invalid values are left out (the page says so)."""
    form = GalleryFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k not in form.errors}
    else:
        data = form.cleaned_data if form.is_bound else {}
    if data.get("selection"):
        from aesplatform.curation import selectors as curation_selectors

        if not curation_selectors.image_selection_exists(selection_id=data["selection"]):
            form.add_error("selection", "No such selection.")
            data = {k: v for k, v in data.items() if k != "selection"}
    sort = data.get("sort") or gallery.DEFAULT_SORT
    filters = gallery.GalleryFilters(
        status=data.get("status") or "", source=data.get("source") or "", import_job=data.get("import_job"),
        dataset_version=data.get("dataset_version"), consensus_min=data.get("consensus_min"),
        consensus_max=data.get("consensus_max"), ratings_min=data.get("ratings_min"),
        ratings_max=data.get("ratings_max"), prescore_min=data.get("prescore_min"),
        prescore_max=data.get("prescore_max"), proposal=data.get("proposal") or "", review=data.get("review") or "",
        duplicates=data.get("duplicates") or "", duplicate_group=data.get("group"), selection=data.get("selection"),
        sort=sort,
    )
    query = {}
    for name in GalleryFilterForm.QUERY_FIELDS:
        value = data.get(name)
        if value not in (None, "") and not (name == "sort" and value == gallery.DEFAULT_SORT):
            query[name] = request.GET.get(name, "").strip()
    cursors = {"after": data.get("after"), "before": data.get("before")}
    return form, filters, query, cursors


class ImageDetailView(RoleRequiredMixin, TemplateView):
    """One image with everything known about it; previous/next follow the gallery it was opened from (the
    gallery's filters and sort come along in the query string)."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/explorer/image_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        try:
            detail = explorer.image_detail(image_id=kwargs["pk"])
        except Image.DoesNotExist:
            raise Http404("No image with this id.") from None
        form, filters, query, _ = gallery_state(self.request)
        neighbours = gallery.gallery_neighbours(filters, image_id=detail.image.id)
        context.update(detail=detail, image=detail.image, neighbours=neighbours, query_string=urlencode(query),
                       filtered=bool(query))
        return context


# --- the embedding map -------------------------------------------------------------------------------------------

MAP_COLOURS = (("status", "Status"), ("consensus", "Consensus (overall)"), ("prescore", "Pre-score (MetaVoter)"),
               ("proposal", "Filter proposal"), ("group", "Near-duplicate group"))


class ImageMapView(RoleRequiredMixin, TemplateView):
    """The CLIP embeddings of one filter run, projected to 2-D, as a scatter; a lasso sends images to the gallery.

    The projection is computed once per run by a background task (curation.services.embedding_map_compute) and
    stored; this page only reads it, with each point's signals for the colouring (two queries)."""

    required_role = Role.CURATOR
    template_name = "annotator_ui/explorer/image_map.html"

    def get_context_data(self, **kwargs):
        from aesplatform.curation import selectors as curation_selectors

        context = super().get_context_data(**kwargs)
        runs = curation_selectors.embedding_map_runs()
        wanted = self.request.GET.get("run", "")
        run = next((r for r in runs if str(r["id"]) == wanted), None) if wanted.isdigit() else None
        if run is None and runs and not wanted:
            run = next((r for r in runs if r["has_map"]), runs[0])
        colour = self.request.GET.get("colour", "status")
        colour = colour if colour in dict(MAP_COLOURS) else "status"
        stored = curation_selectors.embedding_map_get(run_id=run["id"]) if run else None
        context.update(runs=runs, run=run, stored=stored, colour=colour, colours=MAP_COLOURS,
                       unknown_run=bool(wanted) and run is None)
        if stored is not None:
            context["map_data"] = explorer.map_point_signals(run_id=run["id"], points=stored.points)
        return context


class ImageMapComputeView(RoleRequiredMixin, View):
    """POST run=<id>: queue the projection of that run's embeddings, then back to the map."""

    required_role = Role.CURATOR
    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        from aesplatform.curation import selectors as curation_selectors
        from aesplatform.curation import services as curation_services

        raw = request.POST.get("run", "")
        try:
            run = curation_selectors.filter_run_get(run_id=int(raw)) if raw.isdigit() else None
        except ObjectDoesNotExist:
            run = None
        if run is None:
            messages.error(request, "Choose a filter run to compute the map of.")
            return redirect("ui:image_map")
        try:
            curation_services.embedding_map_enqueue(run=run)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Computing the map of “{run.name}”: reload this page in a minute.")
        return redirect(f"{reverse('ui:image_map')}?run={run.pk}")


class ImageMapSelectView(RoleRequiredMixin, View):
    """POST image_ids=<comma-separated ids>: save them as a selection and open the gallery on it."""

    required_role = Role.CURATOR
    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        from aesplatform.curation import services as curation_services

        raw = request.POST.get("image_ids", "")
        back = request.POST.get("back", "")
        back = back if back.startswith("/images/map/") else reverse("ui:image_map")
        try:
            ids = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            messages.error(request, "The selection was not a list of image ids; nothing was saved.")
            return redirect(back)
        try:
            selection = curation_services.image_selection_create(
                image_ids=ids, created_by=request.user, note=request.POST.get("note", "")[:200])
        except ServiceError as exc:
            messages.error(request, f"{exc.message} Nothing was saved.")
            return redirect(back)
        return redirect(f"{reverse('ui:images')}?{urlencode({'selection': selection.pk})}")
