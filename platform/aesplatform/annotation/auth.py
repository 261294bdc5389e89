"""Token authentication for the annotation hot path (next task, submit): the user and their roles in one query.

DRF's TokenAuthentication reads the token with its user; the role check (`IsAnnotator`) then reads the user's
groups in a second query on every request. Here one plain SELECT (hotpath.token_user_and_groups) returns the user
and their group names, and the roles are stored where `accounts.roles.user_roles` caches them for the request, so
the role check costs nothing more. The rules are those of `accounts.roles` (IMPLIED_ROLES, superusers are
admins); nothing is cached beyond the request, so a revoked token or role takes effect on the next request.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from aesplatform.accounts.roles import IMPLIED_ROLES, Role

from . import hotpath


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        found = hotpath.token_user_and_groups(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, group_names = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        granted: set[Role] = set(IMPLIED_ROLES[Role.ADMIN]) if user.is_superuser else set()
        for name in group_names:
            if name in Role._value2member_map_:
                granted |= IMPLIED_ROLES[Role(name)]
        user._aesp_roles = frozenset(granted)  # the per-request cache of accounts.roles.user_roles
        return user, self.get_model()(key=key, user=user)


# What the hot-path views use instead of the project default (same order: session first, then token).
HOT_PATH_AUTHENTICATION = [SessionAuthentication, TokenWithRolesAuthentication]
