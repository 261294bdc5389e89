"""DRF permission classes and a view mixin, one per role."""

from __future__ import annotations

from django.contrib.auth.mixins import AccessMixin
from rest_framework.permissions import BasePermission

from .roles import Role, user_has_role


class _RolePermission(BasePermission):
    role: Role
    message = "This needs the {role} role."

    def has_permission(self, request, view) -> bool:
        allowed = user_has_role(request.user, self.role)
        if not allowed:
            self.message = self.message.format(role=self.role.value)
        return allowed


class IsAnnotator(_RolePermission):
    role = Role.ANNOTATOR


class IsCurator(_RolePermission):
    role = Role.CURATOR


class IsPlatformAdmin(_RolePermission):
    role = Role.ADMIN


class RoleRequiredMixin(AccessMixin):
    """For server-rendered views: anonymous users go to login, users without the role get 403."""

    required_role: Role

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not user_has_role(request.user, self.required_role):
            self.raise_exception = True
            return self.handle_no_permission()
        return super().dispatch(request, *args, **kwargs)
