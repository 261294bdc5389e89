from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from aesplatform.common.health import health

urlpatterns = [
    path("health/", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("aesplatform.api_urls")),
    path("", include("annotator_ui.auth_urls")),  # "login", "logout" (un-namespaced, as settings name them)
    path("", include("annotator_ui.urls")),
]
