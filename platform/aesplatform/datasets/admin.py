from django.contrib import admin

from .models import DatasetItem, DatasetVersion, Export


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "version", "state", "consensus_method", "min_ratings", "split_seed", "frozen_at")
    list_filter = ("state",)
    filter_horizontal = ("campaigns",)


@admin.register(DatasetItem)
class DatasetItemAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "image", "split", "is_expert", "source", "comprehensive")
    list_filter = ("split", "is_expert")
    raw_id_fields = ("version", "image")
    show_full_result_count = False


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "format", "state", "processed", "total", "created_by", "finished_at")
    list_filter = ("format", "state")
