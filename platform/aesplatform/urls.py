from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from aesplatform.common.health import health

urlpatterns = [
    path("health/", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script from a URL (?script) instead of inline: the page runs under the
    # site's Content-Security-Policy; the template swaps the library's inline <style> for a stylesheet.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="annotator_ui/api/swagger_ui.html"),
        name="api-docs",
    ),
    path("api/", include("aesplatform.api_urls")),
    path("", include("annotator_ui.auth_urls")),  # "login", "logout" (un-namespaced, as settings name them)
    path("", include("annotator_ui.urls")),
]

handler400 = "aesplatform.common.errors.bad_request"
handler403 = "aesplatform.common.errors.permission_denied"
handler404 = "aesplatform.common.errors.page_not_found"
handler500 = "aesplatform.common.errors.server_error"
