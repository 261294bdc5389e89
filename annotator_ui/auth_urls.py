"""Login and logout, un-namespaced: settings name them "login" / "logout" (LOGIN_URL, LOGOUT_REDIRECT_URL)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from .views import LoginView

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only (Django 5)
]
