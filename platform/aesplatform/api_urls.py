"""Every API route lives under /api/. Apps append their routes here."""

from django.urls import path

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
    path("campaigns/<int:pk>/", annotation_api.CampaignDetailView.as_view(), name="api-campaign"),
    path("campaigns/<int:pk>/next-task/", annotation_api.NextTaskView.as_view(), name="api-campaign-next-task"),
    path("campaigns/<int:pk>/stats/", annotation_api.CampaignStatsView.as_view(), name="api-campaign-stats"),
    path("campaigns/<int:pk>/consensus/", annotation_api.CampaignConsensusView.as_view(), name="api-campaign-consensus"),
    path("assignments/<int:pk>/submit/", annotation_api.AssignmentSubmitView.as_view(), name="api-assignment-submit"),
    path("assignments/<int:pk>/skip/", annotation_api.AssignmentSkipView.as_view(), name="api-assignment-skip"),
    path("assignments/<int:pk>/flag/", annotation_api.AssignmentFlagView.as_view(), name="api-assignment-flag"),
    path("assignments/<int:pk>/image/", annotation_api.AssignmentImageView.as_view(), name="api-assignment-image"),
    path("annotations/", annotation_api.AnnotationListView.as_view(), name="api-annotations"),
    path("annotations/<int:pk>/", annotation_api.AnnotationDetailView.as_view(), name="api-annotation"),
    path("annotations/<int:pk>/correct/", annotation_api.AnnotationCorrectView.as_view(), name="api-annotation-correct"),
]
