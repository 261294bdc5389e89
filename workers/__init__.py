"""Celery tasks: thin wrappers that take ids and call the apps' services. Importing this registers them."""

from . import catalog  # noqa: F401
