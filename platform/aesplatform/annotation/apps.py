from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "aesplatform.annotation"
    label = "annotation"
    verbose_name = "Annotation"
