from django.urls import path

import aesplatform.common.converters  # noqa: F401  registers <id:...>

from . import views

app_name = "ui"

# Pages of the base layout (annotator_ui part 8): home, annotator pages, curator list pages.
urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("annotate/", views.AnnotateView.as_view(), name="annotate"),
    path("my-work/", views.MyWorkView.as_view(), name="my_work"),
    path("images/", views.ImageGalleryView.as_view(), name="images"),
    path("filtering/", views.FilterRunListView.as_view(), name="filter_runs"),
    path("campaigns/", views.CampaignListView.as_view(), name="campaigns"),
    path("datasets/", views.DatasetListView.as_view(), name="datasets"),
    path("models/", views.ModelListView.as_view(), name="models"),
]

# Import pages (issue 3, part 6: image import).
from . import views_imports  # noqa: E402

urlpatterns += [
    path("imports/", views_imports.ImportListView.as_view(), name="imports"),
    path("imports/<id:pk>/", views_imports.ImportDetailView.as_view(), name="import_detail"),
    path("imports/<id:pk>/progress/", views_imports.ImportProgressView.as_view(), name="import_progress"),
]

# --- annotation (issue 4): the rating page and the curator's campaign pages ---
from . import views_annotate, views_campaigns  # noqa: E402

urlpatterns += [
    path("annotate/<id:pk>/", views_annotate.AnnotateCampaignView.as_view(), name="annotate_campaign"),
    path("campaigns/new/", views_campaigns.CampaignCreateView.as_view(), name="campaign_new"),
    path("campaigns/<id:pk>/", views_campaigns.CampaignDashboardView.as_view(), name="campaign_detail"),
    path("campaigns/<id:pk>/state/", views_campaigns.CampaignStateView.as_view(), name="campaign_state"),
    path("campaigns/<id:pk>/annotations.csv", views_campaigns.CampaignCsvView.as_view(), name="campaign_csv"),
]

# Filtering (issue 6): start a run, follow it, tune thresholds, review batches (annotator_ui/views_curation.py).
from . import views_curation  # noqa: E402

urlpatterns += [
    path("filtering/new/", views_curation.FilterRunCreateView.as_view(), name="filter-run-new"),
    path("filtering/<id:pk>/", views_curation.FilterRunDetailView.as_view(), name="filter-run"),
    path("filtering/<id:pk>/thresholds/", views_curation.FilterRunThresholdsView.as_view(),
         name="filter-run-thresholds"),
    path("filtering/batches/<id:pk>/", views_curation.ReviewBatchView.as_view(), name="review-batch"),
]

# Dataset versions and exports (issue 7): annotator_ui/views_datasets.py; the list is ui:datasets above.
from . import views_datasets  # noqa: E402

urlpatterns += [
    path("datasets/new/", views_datasets.DatasetVersionCreateView.as_view(), name="dataset_new"),
    path("datasets/<id:pk>/", views_datasets.DatasetVersionDetailView.as_view(), name="dataset_detail"),
    path("datasets/<id:pk>/freeze/", views_datasets.DatasetVersionFreezeView.as_view(), name="dataset_freeze"),
    path("datasets/<id:pk>/exports/", views_datasets.ExportCreateView.as_view(), name="dataset_export"),
    path("exports/<id:pk>/progress/", views_datasets.ExportProgressView.as_view(), name="export_progress"),
    path("exports/<id:pk>/download/", views_datasets.ExportDownloadView.as_view(), name="export_download"),
]

# Training jobs, models and pre-scores (issue 8): annotator_ui/views_modeling.py; the list is ui:models above.
from . import views_modeling  # noqa: E402

urlpatterns += [
    path("models/jobs/new/", views_modeling.TrainingJobCreateView.as_view(), name="training_job_new"),
    path("models/jobs/<id:pk>/", views_modeling.TrainingJobDetailView.as_view(), name="training_job"),
    path("models/jobs/<id:pk>/live/", views_modeling.TrainingJobLiveView.as_view(), name="training_job_live"),
    path("models/jobs/<id:pk>/cancel/", views_modeling.TrainingJobCancelView.as_view(), name="training_job_cancel"),
    path("models/<id:pk>/", views_modeling.ModelDetailView.as_view(), name="model_detail"),
    path("models/<id:pk>/plots/<str:name>", views_modeling.ModelPlotView.as_view(), name="model_plot"),
    path("models/<id:pk>/promote/", views_modeling.ModelPromoteView.as_view(), name="model_promote"),
    path("models/<id:pk>/compare/", views_modeling.ModelCompareView.as_view(), name="model_compare"),
    path("models/prescores/", views_modeling.PrescoresView.as_view(), name="prescores"),
    path("models/prescores/runs/", views_modeling.PrescoreRunCreateView.as_view(), name="prescore_run_new"),
]

# Resume / Cancel of every job kind (issue 15: nothing stays stuck).
from . import views_jobs  # noqa: E402

urlpatterns += [
    path("jobs/<str:kind>/<id:pk>/<str:action>/", views_jobs.JobActionView.as_view(), name="job_action"),
]

# Review and correction of ratings (issue 17 point 9): the curators' review stream of a campaign, and My work's edit
# of one's own rating (annotator_ui/views_review.py).
from . import views_review  # noqa: E402

urlpatterns += [
    path("campaigns/<id:pk>/review/", views_review.ReviewStreamView.as_view(), name="review_stream"),
    path("my-work/<id:pk>/edit/", views_review.MyWorkEditView.as_view(), name="my_work_edit"),
]

# Labels people can trust (issue 18): the campaign's consensus method.
from . import views_raters  # noqa: E402

urlpatterns += [
    path("campaigns/<id:pk>/consensus-method/", views_raters.CampaignConsensusMethodView.as_view(),
         name="campaign_consensus_method"),
]

# The image explorer (issue 17, point 5): a detail page per image, the embedding map and its lasso
# (annotator_ui/views_explorer.py); the gallery is ui:images above.
from . import views_explorer  # noqa: E402

urlpatterns += [
    path("images/map/", views_explorer.ImageMapView.as_view(), name="image_map"),
    path("images/map/compute/", views_explorer.ImageMapComputeView.as_view(), name="image_map_compute"),
    path("images/map/select/", views_explorer.ImageMapSelectView.as_view(), name="image_map_select"),
    path("images/<id:pk>/", views_explorer.ImageDetailView.as_view(), name="image_detail"),
]
