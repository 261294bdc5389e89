#!/usr/bin/env python
"""Take the README's screenshots: runs tests/browser/test_screenshots.py (a scene like the tests build, served by
pytest-django's live server, shot with Playwright and Debian's Chromium) against the test database.

    python scripts/take_screenshots.py [OUTPUT_DIR]     (default: docs/screenshots)

Needs what the browser tests need: PostgreSQL and Redis of DJANGO_ENV=test, and /usr/bin/chromium (or AESP_CHROMIUM).
Writes <page>-1366x768.png and <page>-1920x1080.png for the annotate page, the image explorer, the review stream and
the campaign dashboard; a page whose URL does not exist in this checkout is skipped and named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "screenshots"
    env = {**os.environ, "AESP_SCREENSHOTS_DIR": str(out.resolve()), "DJANGO_ENV": os.environ.get("DJANGO_ENV", "test"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "tests/browser/test_screenshots.py", "-q", "-s"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
