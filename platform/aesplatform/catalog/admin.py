from django.contrib import admin

from .models import Image, ImportItem, ImportJob


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "original_name", "source", "status", "width", "height", "format", "created_at")
    list_filter = ("status", "format", "source")
    search_fields = ("original_name", "sha256", "source")
    readonly_fields = ("sha256", "phash", "width", "height", "format", "mode", "file_size", "file", "thumbnail",
                       "import_job")
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page


class ImportItemInline(admin.TabularInline):
    model = ImportItem
    extra = 0
    fields = ("name", "outcome", "image", "message")
    readonly_fields = fields
    show_change_link = False
    can_delete = False
    max_num = 0


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "state", "source_name", "processed", "total", "imported_count", "duplicate_count",
                    "error_count", "created_by", "created_at")
    list_filter = ("kind", "state")
    readonly_fields = ("total", "processed", "imported_count", "duplicate_count", "error_count", "labels_count",
                       "started_at", "finished_at")


@admin.register(ImportItem)
class ImportItemAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "name", "outcome", "image")
    list_filter = ("outcome",)
    search_fields = ("name",)
    raw_id_fields = ("job", "image")
    show_full_result_count = False
