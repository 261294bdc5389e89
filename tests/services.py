"""Reachability of the services the tests run against, with a clear message instead of a stack trace."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

DEFAULTS = {
    "PostgreSQL": ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aesplatform", 5432),
    "Redis": ("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9", 6379),
}


def unreachable_services(timeout: float = 2.0) -> list[str]:
    problems = []
    for name, (variable, default, default_port) in DEFAULTS.items():
        url = urlparse(os.environ.get(variable, default))
        host, port = url.hostname or "127.0.0.1", url.port or default_port
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            problems.append(f"{name} is unreachable at {host}:{port} ({variable}; {exc.strerror or exc}).")
    return problems


if __name__ == "__main__":
    import sys

    problems = unreachable_services()
    for line in problems:
        print(f"make test: {line}", file=sys.stderr)
    if problems:
        print(
            "make test: the tests run against real PostgreSQL and Redis. Start them, or point DATABASE_URL / "
            "CELERY_BROKER_URL at running servers.",
            file=sys.stderr,
        )
    sys.exit(1 if problems else 0)
