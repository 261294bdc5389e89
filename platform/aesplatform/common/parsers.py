"""The API's JSON parser: a size limit checked before parsing and a nesting limit checked after.

DRF's own parser reads the whole stream into the JSON decoder: tens of MB are parsed before any limit applies
(Django's DATA_UPLOAD_MAX_MEMORY_SIZE only guards `request.body`), and a body of deeply nested brackets raises
RecursionError (a 500). No endpoint takes more than a few levels of nesting.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def nesting_depth_exceeds(value, limit: int) -> bool:
    """Whether lists/objects nest deeper than ``limit`` (iterative: a deep value cannot exhaust the stack here)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.AESP_MAX_JSON_BODY_BYTES
        too_large = RequestBodyTooLarge({"detail": f"JSON bodies are limited to {limit} bytes.",
                                         "code": RequestBodyTooLarge.default_code})
        request = parser_context.get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise too_large
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ParseError(f"JSON parse error - {exc}") from None
        depth = settings.AESP_MAX_JSON_DEPTH
        if isinstance(data, (dict, list)) and nesting_depth_exceeds(data, depth):
            raise ParseError(f"JSON parse error - lists and objects may nest at most {depth} levels deep.")
        return data
