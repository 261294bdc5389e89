from aesplatform.accounts.roles import user_roles


def navigation(request):
    roles = user_roles(getattr(request, "user", None))
    return {"user_roles": sorted(r.value for r in roles)}
