from aesplatform.accounts.roles import Role, user_roles

from .navigation import nav_for


def navigation(request):
    user = getattr(request, "user", None)
    roles = user_roles(user)
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match and match.namespace == "ui" else None
    # The highest role, for the badge next to the user's name.
    top_role = next((r.value for r in (Role.ADMIN, Role.CURATOR, Role.ANNOTATOR) if r in roles), None)
    return {
        "user_roles": sorted(r.value for r in roles),
        "top_role": top_role,
        "other_roles": [r.value for r in (Role.CURATOR, Role.ANNOTATOR) if r in roles and r.value != top_role],
        "nav_items": nav_for(roles, current) if roles else [],
    }
