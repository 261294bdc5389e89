"""The three roles, as Django groups. Admins (group or superuser) hold every role; curators may also annotate."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ANNOTATOR = "annotator"
    CURATOR = "curator"
    ADMIN = "admin"


# Which roles a membership grants: an admin can do what a curator does, a curator what an annotator does.
IMPLIED_ROLES: dict[Role, frozenset[Role]] = {
    Role.ANNOTATOR: frozenset({Role.ANNOTATOR}),
    Role.CURATOR: frozenset({Role.CURATOR, Role.ANNOTATOR}),
    Role.ADMIN: frozenset({Role.ADMIN, Role.CURATOR, Role.ANNOTATOR}),
}


def user_roles(user) -> frozenset[Role]:
    """The roles a user holds (cached on the user object for the request)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_aesp_roles", None)
    if cached is not None:
        return cached
    granted: set[Role] = set()
    if user.is_superuser:
        granted |= IMPLIED_ROLES[Role.ADMIN]
    for name in user.groups.values_list("name", flat=True):
        if name in Role._value2member_map_:
            granted |= IMPLIED_ROLES[Role(name)]
    roles = frozenset(granted)
    user._aesp_roles = roles
    return roles


def user_has_role(user, role: Role) -> bool:
    return role in user_roles(user)
