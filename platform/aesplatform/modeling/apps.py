from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "aesplatform.modeling"
    label = "modeling"
    verbose_name = "Training, model registry and pre-scoring"
