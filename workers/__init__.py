"""Celery tasks: thin wrappers that take ids and call the apps' services. Importing this registers them."""

from . import catalog  # noqa: F401
from . import annotation  # noqa: F401
from . import curation  # noqa: F401
from . import datasets  # noqa: F401
from . import jobs  # noqa: F401
from . import modeling  # noqa: F401
