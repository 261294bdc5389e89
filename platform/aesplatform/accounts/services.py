"""Writes for accounts: users and their roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from .roles import Role


@transaction.atomic
def roles_ensure_groups() -> dict[Role, Group]:
    """Create the three role groups if missing (idempotent; also run by a data migration)."""
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}


@transaction.atomic
def user_create(*, username: str, password: str, roles: list[Role], email: str = "", is_staff: bool = False):
    """Create a user holding `roles`. Admins also get Django admin access (is_staff + superuser)."""
    User = get_user_model()
    user = User(username=username, email=email, is_staff=is_staff or Role.ADMIN in roles)
    user.is_superuser = Role.ADMIN in roles
    validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    groups = roles_ensure_groups()
    user.groups.set([groups[role] for role in roles])
    return user


@transaction.atomic
def user_set_roles(*, user, roles: list[Role]) -> None:
    groups = roles_ensure_groups()
    user.groups.set([groups[role] for role in roles])
    user.is_staff = user.is_superuser = Role.ADMIN in roles
    user.full_clean()
    user.save(update_fields=["is_staff", "is_superuser"])
