"""One error shape for the API: DRF's, with Django's ValidationError mapped to 400 instead of a 500."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A business rule refused the request (a 4xx, never a 500). Services raise it or one of its subclasses."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    elif isinstance(exc, ServiceError):
        api_exc = exceptions.APIException(detail={"detail": exc.message, "code": exc.code})
        api_exc.status_code = exc.status_code
        exc = api_exc
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    return exception_handler(exc, context)
