"""The annotator's rating page: one image large, the campaign's dimensions, keyboard first.

The page is a shell; annotate.js leases tasks, submits and retries through the API (/api/campaigns/<id>/next-task/,
/api/assignments/<id>/submit/ ...). Its configuration travels as json_script (no inline script: CSP-friendly).
"""

from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from django.views.generic import TemplateView

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.annotation import selectors
from aesplatform.annotation.models import CampaignState
from aesplatform.annotation.services import expected_dimensions
from model_core.standard import LEVEL_CENTRES, LEVEL_UPPER_BOUNDS, LEVELS, grouped

UI_VERSION = "annotate.js/1"
UNDO_SECONDS = 8  # how long the page offers to undo a skip or a flag (the server allows services.RESTORE_WINDOW)


def dimension_groups(dims) -> list[dict]:
    """The campaign's dimensions under the standard's groups, each with its index in the page's (keyboard) order."""
    groups, index = [], 0
    for group, members in grouped(dims):
        rows = []
        for d in members:
            rows.append({"index": index, "key": d.key, "name": d.name, "definition": d.definition})
            index += 1
        groups.append({"key": group.key, "label": group.label, "description": group.description, "dimensions": rows})
    return groups


class AnnotateCampaignView(RoleRequiredMixin, TemplateView):
    required_role = Role.ANNOTATOR
    template_name = "annotator_ui/annotate/rate.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        campaign = selectors.campaign_for_annotator(campaign_id=kwargs["pk"], user=self.request.user)
        if campaign is None:
            raise Http404("No such campaign lists you as an annotator.")
        groups = dimension_groups(expected_dimensions(campaign.mode))
        ordered = [d for g in groups for d in g["dimensions"]]
        counts = selectors.annotator_session_counts(campaign=campaign, user=self.request.user)
        context.update(
            campaign=campaign,
            active=campaign.state == CampaignState.ACTIVE,
            groups=groups,
            levels=list(enumerate(LEVELS, start=1)),
            counts=counts,
            config={
                "campaignId": campaign.pk,
                "userId": self.request.user.pk,  # drafts are kept per user: one browser, several annotators
                "mode": campaign.mode,
                "active": campaign.state == CampaignState.ACTIVE,
                "dimensions": [{"key": d["key"], "name": d["name"]} for d in ordered],
                "levels": [{"name": name, "centre": centre} for name, centre in zip(LEVELS, LEVEL_CENTRES)],
                "levelUpperBounds": list(LEVEL_UPPER_BOUNDS),
                "urls": {
                    "next": reverse("api-campaign-next-task", args=[campaign.pk]),
                    "submit": reverse("api-assignment-submit", args=[0]),
                    "skip": reverse("api-assignment-skip", args=[0]),
                    "flag": reverse("api-assignment-flag", args=[0]),
                    "restore": reverse("api-assignment-restore", args=[0]),
                },
                "counts": counts,
                "uiVersion": UI_VERSION,
                "undoSeconds": UNDO_SECONDS,
            },
        )
        return context
