"""The campaign dashboard's consensus method: the curator changes it here (issue 18); the dashboard's "Raters"
section (campaigns/_raters.html) shows what it makes of each rater."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View

from aesplatform.accounts.permissions import RoleRequiredMixin
from aesplatform.accounts.roles import Role
from aesplatform.annotation import services
from aesplatform.annotation.models import Campaign, ConsensusMethod
from aesplatform.common.exceptions import ServiceError


class CampaignConsensusMethodView(RoleRequiredMixin, View):
    """POST consensus_method: the campaign's consensus is recomputed with it (queued after the commit)."""

    required_role = Role.CURATOR

    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        method = request.POST.get("consensus_method", "")
        try:
            services.campaign_update(campaign=campaign, data={"consensus_method": method})
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Consensus method: {ConsensusMethod(method).label}. The consensus and the "
                                      "raters' estimates are being recomputed.")
        return redirect(reverse("ui:campaign_detail", args=[pk]) + "#raters-h")
