"""The three roles, as Django groups. Admins (group or superuser) hold every role; curators may also annotate."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ANNOTATOR = "annotator"
    CURATOR = "curator"
    ADMIN = "admin"


# A group that is no role: the accounts `make demo-loop` creates (its curator and simulated annotators) are in it.
# They keep their roles (the loop acts through the API as them), but pickers of people leave them out.
SIMULATED_GROUP = "simulated"


# Which roles a membership grants: an admin can do what a curator does, a curator what an annotator does.
IMPLIED_ROLES: dict[Role, frozenset[Role]] = {
    Role.ANNOTATOR: frozenset({Role.ANNOTATOR}),
    Role.CURATOR: frozenset({Role.CURATOR, Role.ANNOTATOR}),
    Role.ADMIN: frozenset({Role.ADMIN, Role.CURATOR, Role.ANNOTATOR}),
}


def roles_granted(*, is_superuser: bool, group_names) -> frozenset[Role]:
    """The roles a superuser flag and these group memberships grant (groups that are no role are ignored)."""
    granted: set[Role] = set(IMPLIED_ROLES[Role.ADMIN]) if is_superuser else set()
    for name in group_names:
        if name in Role._value2member_map_:
            granted |= IMPLIED_ROLES[Role(name)]
    return frozenset(granted)


# The roles of a user object, kept on that object: its lifetime is the request (the authentication loads a new one
# for each), so a role granted or revoked counts from the next request. Only this module reads or writes it.
_ROLES_ATTRIBUTE = "_aesp_roles"


def user_roles_remember(user, roles: frozenset[Role]) -> None:
    """Record the roles of this user object for the rest of the request, for a caller that read the user's groups
    along with the user (the hot path's token authentication): `user_roles` then asks nothing more."""
    setattr(user, _ROLES_ATTRIBUTE, frozenset(roles))


def user_roles(user) -> frozenset[Role]:
    """The roles a user holds (read once per user object, see `user_roles_remember`)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, _ROLES_ATTRIBUTE, None)
    if cached is not None:
        return cached
    roles = roles_granted(is_superuser=user.is_superuser, group_names=user.groups.values_list("name", flat=True))
    user_roles_remember(user, roles)
    return roles


def user_has_role(user, role: Role) -> bool:
    return role in user_roles(user)
