from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class CommonConfig(AppConfig):
    """Shared building blocks (abstract models only); its ready() prepares the local folders."""

    name = "aesplatform.common"
    label = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        local_folders_create()


def local_folders_create() -> None:
    """Create settings.LOCAL_FOLDERS (the development profile's SQLite folder, filesystem broker and result store)
    before anything opens them: every process (web, worker, manage.py) starts Django first."""
    for folder in settings.LOCAL_FOLDERS:
        Path(folder).mkdir(parents=True, exist_ok=True)
