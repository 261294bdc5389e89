"""Streaming, resumable downloads (HTTP Range, If-Range with a strong ETag) for export archives: of a file, or
of bytes produced on the fly (the export's tar, built from its files).

One byte range per request (what download managers and `curl -C -` ask for); a multi-range request gets the
whole file (RFC 9110 allows ignoring Range). An unsatisfiable range is a 416 with `Content-Range: bytes */size`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.http import HttpResponse, StreamingHttpResponse

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1 << 20


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive), None for 'whole file', or 'unsatisfiable'."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match:
        return None  # malformed or several ranges: serve the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return (max(0, size - length), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return (start, end)


def _read(path: Path, start: int, length: int):
    with open(path, "rb") as handle:
        handle.seek(start)
        left = length
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def ranged_file_response(request, path: Path, *, filename: str, etag: str, content_type: str) -> HttpResponse:
    return ranged_response(request, size=os.path.getsize(path),
                           body=lambda start, end: _read(path, start, end - start + 1),
                           filename=filename, etag=etag, content_type=content_type)


def ranged_response(request, *, size: int, body, filename: str, etag: str, content_type: str) -> HttpResponse:
    """A download of `size` bytes whose bytes [start, end] (inclusive) `body(start, end)` yields."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
    }
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted and if_range is not None and if_range.strip() != etag:
        wanted = None  # the file changed since the client's first part: start over with the whole file
    span = parse_range(wanted, size) if wanted else None
    if span == "unsatisfiable":
        response = HttpResponse(status=416, content_type="text/plain")
        response.content = b"Requested range not satisfiable\n"
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = etag
        return response
    if span is None:
        start, end, status = 0, size - 1, 200
    else:
        start, end = span
        status = 206
    length = end - start + 1 if size else 0
    content = iter(()) if request.method == "HEAD" or not length else body(start, end)
    response = StreamingHttpResponse(content, status=status, content_type=content_type)
    for key, value in headers.items():
        response[key] = value
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response
