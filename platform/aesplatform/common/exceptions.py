"""One error shape for the API: DRF's, with Django's ValidationError mapped to 400 instead of a 500."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import (
    ObjectDoesNotExist,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
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


def _suspicious_request(exc: SuspiciousOperation) -> exceptions.APIException:
    """Django's refusals of a request body (raised while DRF parses it) as JSON errors instead of HTML pages."""
    if isinstance(exc, RequestDataTooBig):
        status_code, code, message = 413, "request_too_large", "The request body is too large."
    elif isinstance(exc, TooManyFilesSent):
        status_code, code = 400, "too_many_files"
        message = (
            f"Too many files in one request (at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}); send them in parts."
        )
    elif isinstance(exc, TooManyFieldsSent):
        status_code, code = 400, "too_many_fields"
        message = f"Too many form fields in one request (at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS})."
    else:
        status_code, code, message = 400, "bad_request", "The request was refused as malformed."
    api_exc = exceptions.APIException(detail={"detail": message, "code": code})
    api_exc.status_code = status_code
    return api_exc


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
    elif isinstance(exc, SuspiciousOperation):
        exc = _suspicious_request(exc)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    return exception_handler(exc, context)
