from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "aesplatform.annotation"
    label = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        from . import schema  # noqa: F401  registers the OpenAPI extension of the hot-path token auth
