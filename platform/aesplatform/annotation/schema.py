"""OpenAPI description of the annotation hot path's token authentication (same header as DRF's token auth)."""

from drf_spectacular.authentication import TokenScheme


class TokenWithRolesScheme(TokenScheme):
    # Its own component name: drf-spectacular keys security schemes by class, and two classes may not share one.
    target_class = "aesplatform.annotation.auth.TokenWithRolesAuthentication"
    name = "tokenAuthWithRoles"
    priority = 1
