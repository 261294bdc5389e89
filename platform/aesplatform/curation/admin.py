from django.contrib import admin

from .models import CuratorDecision, FilterResult, FilterRun, ReviewBatch


@admin.register(FilterRun)
class FilterRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "clip_model_name", "state", "processed", "total", "created_by", "created_at")
    list_filter = ("state", "clip_model_name")


@admin.register(FilterResult)
class FilterResultAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "image", "proposed_decision", "uncertainty", "face_count", "blur_variance",
                    "scored_at")
    list_filter = ("proposed_decision", "is_exact_duplicate")
    raw_id_fields = ("run", "image", "near_duplicate_of", "batch")
    exclude = ("embedding",)
    show_full_result_count = False


@admin.register(ReviewBatch)
class ReviewBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "number", "state", "decided_by", "decided_at")
    list_filter = ("state",)
    raw_id_fields = ("run",)


@admin.register(CuratorDecision)
class CuratorDecisionAdmin(admin.ModelAdmin):
    """The audit trail is read-only, even for admins."""

    list_display = ("id", "batch", "image", "decision", "overrode_proposal", "decided_by", "decided_at")
    list_filter = ("decision", "overrode_proposal")
    raw_id_fields = ("batch", "image")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
