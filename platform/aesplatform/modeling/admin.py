from django.contrib import admin

from .models import ModelVersion, Prescore, PrescoreRun, TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset_version", "preset", "state", "step", "total_steps", "loss", "created_by",
                    "created_at")
    list_filter = ("state", "preset")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "backend", "promoted", "dataset_version", "created_at")
    list_filter = ("backend", "promoted")


@admin.register(PrescoreRun)
class PrescoreRunAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "state", "processed", "total", "created_at")
    list_filter = ("state",)


@admin.register(Prescore)
class PrescoreAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "model_version", "metavoter_score", "lm_score", "regression_score", "uncertainty")
    raw_id_fields = ("image", "model_version")
    show_full_result_count = False
