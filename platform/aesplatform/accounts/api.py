"""Who am I, API tokens, and user management (admins)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from aesplatform.common.serializers import StrictInputSerializer

from . import selectors, services
from .permissions import IsCurator, IsPlatformAdmin
from .roles import Role, roles_granted


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    roles = serializers.SerializerMethodField()

    def get_roles(self, user) -> list[str]:
        if not user.is_active:
            return []
        # the groups as prefetched by selectors.user_list (one statement for the whole list, not one per user)
        granted = roles_granted(is_superuser=user.is_superuser, group_names=[g.name for g in user.groups.all()])
        return sorted(role.value for role in granted)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=UserSerializer, summary="The signed-in user and their roles")
    def get(self, request):
        return Response(UserSerializer(request.user).data)


class LoginThrottle(AnonRateThrottle):
    scope = "login"
    rate = "10/min"


class TokenView(APIView):
    """Exchange a username and password for an API token (send it as `Authorization: Token <key>`)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [LoginThrottle]

    class InputSerializer(serializers.Serializer):
        # The user model's limit: a longer name cannot exist, and must not reach authentication (whose failure
        # log stores the attempted name in a 255-character column).
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, max_length=4096)

        class Meta:
            ref_name = "TokenRequest"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: inline_serializer("TokenOut", {"token": serializers.CharField()}),
            429: OpenApiResponse(description="Too many failed attempts for this username from this address"),
        },
        summary="Obtain an API token",
        auth=[],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if getattr(request, "axes_locked_out", False):  # django-axes refused it: too many failures for this pair
            minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
            return Response(
                {"detail": f"Too many failed login attempts for this account from your address. "
                           f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.", "code": "locked_out"},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
            )
        if user is None or not user.is_active:
            return Response({"detail": "Wrong username or password."}, status=status.HTTP_400_BAD_REQUEST)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class UserListCreateView(ListAPIView):
    """Active users (curators staff campaigns from this list); admins create users with roles."""

    serializer_class = UserSerializer

    class InputSerializer(StrictInputSerializer):
        username = serializers.CharField(max_length=150)
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        password = serializers.CharField(min_length=10, trim_whitespace=False, write_only=True)
        roles = serializers.ListField(child=serializers.ChoiceField(choices=[r.value for r in Role]), allow_empty=False)

        class Meta:
            ref_name = "UserCreate"

    def get_permissions(self):
        return [IsPlatformAdmin()] if self.request.method == "POST" else [IsCurator()]

    def get_queryset(self):
        role = self.request.query_params.get("role")
        if role is not None and role not in Role._value2member_map_:
            raise serializers.ValidationError({"role": [f"Unknown role; one of: {', '.join(r.value for r in Role)}."]})
        return selectors.user_list(role=Role(role) if role else None)

    @extend_schema(
        parameters=[OpenApiParameter("role", enum=[r.value for r in Role], required=False)],
        summary="List users, optionally by role",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=InputSerializer, responses={201: UserSerializer},
                   summary="Create a user with roles (admins)")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        roles = [Role(r) for r in fields.pop("roles")]
        user = services.user_create(**fields, roles=roles)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)
