from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "aesplatform.curation"
    label = "curation"
    verbose_name = "Filtering and curation"
