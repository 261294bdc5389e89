"""Login and logout, un-namespaced: settings name them "login" / "logout" (LOGIN_URL, LOGOUT_REDIRECT_URL)."""

from django.urls import path

from .views import LoginView, LogoutView

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),  # POST only (Django 5)
]
