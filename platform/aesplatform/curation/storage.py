"""Reading stored image files from the filtering pipeline's decode workers when storage is not a local disk.

The workers are started from a forkserver (see engine/pipeline.py), so this function is pickled by reference
and imported fresh there: it sets Django up on first use (DJANGO_SETTINGS_MODULE comes with the environment)
and must not import any model at module level.
"""

from __future__ import annotations


def storage_read(name: str) -> bytes:
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()
    from django.core.files.storage import default_storage

    with default_storage.open(name, "rb") as f:
        return f.read()
