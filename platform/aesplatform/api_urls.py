"""Every API route lives under /api/. Apps append their routes here."""

from django.urls import path

from aesplatform.accounts import api as accounts_api

urlpatterns = [
    path("auth/token/", accounts_api.TokenView.as_view(), name="api-token"),
    path("me/", accounts_api.MeView.as_view(), name="api-me"),
    path("users/", accounts_api.UserListCreateView.as_view(), name="api-users"),
]
