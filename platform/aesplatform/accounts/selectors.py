from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .roles import Role


def user_list(*, role: Role | None = None) -> QuerySet:
    users = get_user_model().objects.filter(is_active=True).prefetch_related("groups").order_by("username")
    if role is None:
        return users
    if role == Role.ADMIN:
        return users.filter(is_superuser=True) | users.filter(groups__name=Role.ADMIN.value)
    return users.filter(groups__name=role.value).distinct()
