"""Token authentication for the annotation hot path (next task, submit): the user and their roles in one query.

DRF's TokenAuthentication reads the token with its user; the role check (`IsAnnotator`) then reads the user's
groups in a second query on every request. Here the group memberships come along as EXISTS sub-selects of the
token query and are stored where `accounts.roles.user_roles` caches them for the request, so the role check
costs nothing more. The rules are those of `accounts.roles` (IMPLIED_ROLES, superusers are admins); nothing is
cached beyond the request, so a revoked token or role takes effect on the next request.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from aesplatform.accounts.roles import IMPLIED_ROLES, Role


def _role_flag(role: Role) -> str:
    return f"holds_{role.value}"


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        membership = get_user_model().groups.through.objects
        flags = {
            _role_flag(role): Exists(membership.filter(user_id=OuterRef("user_id"), group__name=role.value)) for role in Role
        }
        try:
            token = self.get_model().objects.select_related("user").annotate(**flags).get(key=key)
        except self.get_model().DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        granted: set[Role] = set(IMPLIED_ROLES[Role.ADMIN]) if user.is_superuser else set()
        for role in Role:
            if getattr(token, _role_flag(role)):
                granted |= IMPLIED_ROLES[role]
        user._aesp_roles = frozenset(granted)  # the per-request cache of accounts.roles.user_roles
        return user, token


# What the hot-path views use instead of the project default (same order: session first, then token).
HOT_PATH_AUTHENTICATION = [SessionAuthentication, TokenWithRolesAuthentication]
