"""`aesp`: the installed entry point, the same commands as manage.py (`aesp migrate`, `aesp demo_setup`, ...)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aesplatform.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["aesp", *sys.argv[1:]])


if __name__ == "__main__":
    main()
