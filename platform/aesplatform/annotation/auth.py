"""Token authentication for the annotation hot path (next task, submit): the user and their roles in one query.

DRF's TokenAuthentication reads the token with its user; the role check (`IsAnnotator`) then reads the user's
groups in a second query on every request. Here one plain SELECT (hotpath.token_user_and_groups) returns the user
and their group names, and the roles are handed to `accounts.roles.user_roles_remember` for the request, so
the role check costs nothing more. The rules are those of `accounts.roles.roles_granted`; nothing is cached
beyond the request, so a revoked token or role takes effect on the next request.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from aesplatform.accounts.roles import roles_granted, user_roles_remember

from . import hotpath


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        found = hotpath.token_user_and_groups(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, group_names = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        user_roles_remember(user, roles_granted(is_superuser=user.is_superuser, group_names=group_names))
        return user, self.get_model()(key=key, user=user)


# What the hot-path views use instead of the project default (same order: session first, then token).
HOT_PATH_AUTHENTICATION = [SessionAuthentication, TokenWithRolesAuthentication]
