"""Every API route lives under /api/. Apps append their routes here."""

from django.urls import path

import aesplatform.common.converters  # noqa: F401  registers <id:...>
from aesplatform.accounts import api as accounts_api

urlpatterns = [
    path("auth/token/", accounts_api.TokenView.as_view(), name="api-token"),
    path("me/", accounts_api.MeView.as_view(), name="api-me"),
    path("users/", accounts_api.UserListCreateView.as_view(), name="api-users"),
]

# --- annotation (issue 4) ---
from aesplatform.annotation import api as annotation_api  # noqa: E402

urlpatterns += [
    path("campaigns/", annotation_api.CampaignListCreateView.as_view(), name="api-campaigns"),
    path("campaigns/<id:pk>/", annotation_api.CampaignDetailView.as_view(), name="api-campaign"),
    path("campaigns/<id:pk>/next-task/", annotation_api.NextTaskView.as_view(), name="api-campaign-next-task"),
    path("campaigns/<id:pk>/stats/", annotation_api.CampaignStatsView.as_view(), name="api-campaign-stats"),
    path("campaigns/<id:pk>/consensus/", annotation_api.CampaignConsensusView.as_view(), name="api-campaign-consensus"),
    path("assignments/<id:pk>/submit/", annotation_api.AssignmentSubmitView.as_view(), name="api-assignment-submit"),
    path("assignments/<id:pk>/skip/", annotation_api.AssignmentSkipView.as_view(), name="api-assignment-skip"),
    path("assignments/<id:pk>/flag/", annotation_api.AssignmentFlagView.as_view(), name="api-assignment-flag"),
    path("assignments/<id:pk>/image/", annotation_api.AssignmentImageView.as_view(), name="api-assignment-image"),
    path("annotations/", annotation_api.AnnotationListView.as_view(), name="api-annotations"),
    path("annotations/<id:pk>/", annotation_api.AnnotationDetailView.as_view(), name="api-annotation"),
    path("annotations/<id:pk>/correct/", annotation_api.AnnotationCorrectView.as_view(), name="api-annotation-correct"),
    path("annotations/<id:pk>/review/", annotation_api.AnnotationReviewView.as_view(), name="api-annotation-review"),
    path("campaigns/<id:pk>/review/", annotation_api.CampaignReviewQueueView.as_view(), name="api-campaign-review"),
]

from aesplatform.curation import api as curation_api  # noqa: E402

urlpatterns += [
    path("filter-runs/", curation_api.FilterRunListCreateView.as_view(), name="api-filter-runs"),
    path("filter-runs/defaults/", curation_api.FilterDefaultsView.as_view(), name="api-filter-defaults"),
    path("filter-runs/<id:pk>/", curation_api.FilterRunDetailView.as_view(), name="api-filter-run"),
    path("filter-runs/<id:pk>/thresholds/", curation_api.FilterRunThresholdsView.as_view(),
         name="api-filter-run-thresholds"),
    path("filter-runs/<id:pk>/resume/", curation_api.FilterRunResumeView.as_view(), name="api-filter-run-resume"),
    path("filter-runs/<id:pk>/cancel/", curation_api.FilterRunCancelView.as_view(), name="api-filter-run-cancel"),
    path("filter-runs/<id:pk>/results/", curation_api.FilterResultListView.as_view(), name="api-filter-run-results"),
    path("filter-runs/<id:pk>/batches/", curation_api.ReviewBatchListView.as_view(), name="api-filter-run-batches"),
    path("review-batches/<id:pk>/", curation_api.ReviewBatchDetailView.as_view(), name="api-review-batch"),
    path("review-batches/<id:pk>/decide/", curation_api.ReviewBatchDecideView.as_view(),
         name="api-review-batch-decide"),
]

# --- catalog: images and imports (issue 3, part 6) ---
from rest_framework.routers import SimpleRouter  # noqa: E402

from aesplatform.catalog import api as catalog_api  # noqa: E402

catalog_router = SimpleRouter(use_regex_path=False)
catalog_router.register("images", catalog_api.ImageViewSet, basename="image")
catalog_router.register("imports", catalog_api.ImportJobViewSet, basename="import-job")
urlpatterns += catalog_router.urls

# --- datasets: versions and exports (issue 7) ---
from aesplatform.datasets import api as datasets_api  # noqa: E402

urlpatterns += [
    path("dataset-versions/", datasets_api.DatasetVersionListCreateView.as_view(), name="api-dataset-versions"),
    path("dataset-versions/<id:pk>/", datasets_api.DatasetVersionDetailView.as_view(), name="api-dataset-version"),
    path("dataset-versions/<id:pk>/freeze/", datasets_api.DatasetVersionFreezeView.as_view(),
         name="api-dataset-version-freeze"),
    path("dataset-versions/<id:pk>/items/", datasets_api.DatasetItemListView.as_view(),
         name="api-dataset-version-items"),
    path("exports/", datasets_api.ExportListCreateView.as_view(), name="api-exports"),
    path("exports/<id:pk>/", datasets_api.ExportDetailView.as_view(), name="api-export"),
    path("exports/<id:pk>/download/", datasets_api.ExportDownloadView.as_view(), name="api-export-download"),
    path("exports/<id:pk>/resume/", datasets_api.ExportResumeView.as_view(), name="api-export-resume"),
    path("exports/<id:pk>/cancel/", datasets_api.ExportCancelView.as_view(), name="api-export-cancel"),
]

# --- modeling: training jobs, model registry, pre-scoring (issue 8) ---
from aesplatform.modeling import api as modeling_api  # noqa: E402

urlpatterns += [
    path("training-jobs/", modeling_api.TrainingJobListCreateView.as_view(), name="api-training-jobs"),
    path("training-jobs/<id:pk>/", modeling_api.TrainingJobDetailView.as_view(), name="api-training-job"),
    path("training-jobs/<id:pk>/cancel/", modeling_api.TrainingJobCancelView.as_view(), name="api-training-job-cancel"),
    path("training-jobs/<id:pk>/resume/", modeling_api.TrainingJobResumeView.as_view(), name="api-training-job-resume"),
    path("model-versions/", modeling_api.ModelVersionListCreateView.as_view(), name="api-model-versions"),
    path("model-versions/<id:pk>/", modeling_api.ModelVersionDetailView.as_view(), name="api-model-version"),
    path("model-versions/<id:pk>/promote/", modeling_api.ModelVersionPromoteView.as_view(),
         name="api-model-version-promote"),
    path("prescore-runs/", modeling_api.PrescoreRunListCreateView.as_view(), name="api-prescore-runs"),
    path("prescore-runs/<id:pk>/", modeling_api.PrescoreRunDetailView.as_view(), name="api-prescore-run"),
    path("prescore-runs/<id:pk>/resume/", modeling_api.PrescoreRunResumeView.as_view(), name="api-prescore-run-resume"),
    path("prescore-runs/<id:pk>/cancel/", modeling_api.PrescoreRunCancelView.as_view(), name="api-prescore-run-cancel"),
    path("prescores/", modeling_api.PrescoreListView.as_view(), name="api-prescores"),
]
urlpatterns += [
    path("campaigns/<id:pk>/active-priorities/", modeling_api.CampaignPrioritiesRefreshView.as_view(),
         name="api-campaign-active-priorities"),
]

# --- annotation: undo of a skip or a flag (issue 17, annotate page) ---
urlpatterns += [
    path("assignments/<id:pk>/restore/", annotation_api.AssignmentRestoreView.as_view(), name="api-assignment-restore"),
]
