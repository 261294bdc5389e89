from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "aesplatform.catalog"
    label = "catalog"
    verbose_name = "Image catalog"
