from django.contrib import admin

from model_core.standard import DIMENSION_KEYS

from .models import Agreement, Annotation, AnnotationReview, Assignment, Campaign, Consensus, Task


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "mode", "state", "redundancy", "gold_ratio", "task_order", "show_prescores",
                    "created_at")
    list_filter = ("mode", "state", "task_order")
    filter_horizontal = ("annotators",)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "campaign", "image", "state", "is_gold", "priority", "submitted_count")
    list_filter = ("state", "is_gold")
    raw_id_fields = ("campaign", "image")
    show_full_result_count = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "annotator", "state", "leased_at", "leased_until", "finished_at")
    list_filter = ("state",)
    raw_id_fields = ("task", "annotator")
    show_full_result_count = False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    """Annotations are immutable: admins can read them, never edit them (a correction supersedes)."""

    list_display = ("id", "task", "annotator", "is_expert", "comprehensive", "supersedes", "corrected_by",
                    "created_at")
    list_filter = ("is_expert",)
    raw_id_fields = ("task", "annotator", "assignment", "supersedes", "corrected_by")
    readonly_fields = ("task", "annotator", "assignment", "is_expert", "supersedes", "corrected_by",
                       "correction_reason", "idempotency_key", "time_spent_ms", "ui_version", *DIMENSION_KEYS)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Consensus)
class ConsensusAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "dimension", "origin", "campaign", "score", "count", "std", "method")
    list_filter = ("origin", "dimension", "method")
    raw_id_fields = ("image", "campaign")
    show_full_result_count = False


@admin.register(Agreement)
class AgreementAdmin(admin.ModelAdmin):
    list_display = ("campaign", "dimension", "krippendorff_alpha", "icc", "items", "annotations", "computed_at")
    list_filter = ("dimension",)


@admin.register(AnnotationReview)
class AnnotationReviewAdmin(admin.ModelAdmin):
    """Curators' verdicts on ratings: read here, written through the review stream or the API (the consensus
    must be recomputed after a change)."""

    list_display = ("id", "annotation", "version", "state", "reviewed_by", "reviewed_at")
    list_filter = ("state",)
    raw_id_fields = ("annotation", "version", "reviewed_by")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
