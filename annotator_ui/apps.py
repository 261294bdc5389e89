from django.apps import AppConfig


class AnnotatorUIConfig(AppConfig):
    name = "annotator_ui"
    label = "annotator_ui"
    verbose_name = "Annotator and curator pages"
