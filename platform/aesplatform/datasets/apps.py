from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "aesplatform.datasets"
    label = "datasets"
    verbose_name = "Dataset versions and exports"
