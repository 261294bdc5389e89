"""The test profile: `DJANGO_ENV=test` and a throw-away var dir (media, results) before the settings are read."""

import os
import tempfile

os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("AESP_VAR_DIR", tempfile.mkdtemp(prefix="aesp-test-var-"))
os.environ.setdefault("AESP_IMPORT_ROOTS", os.path.join(os.environ["AESP_VAR_DIR"], "incoming"))
# One broker namespace per test run (the workers it starts inherit it): runs sharing a Redis never purge, consume
# or answer each other's messages.
os.environ.setdefault("CELERY_BROKER_KEY_PREFIX", f"aesp-test-{os.getpid()}:")

from .settings import *  # noqa: E402,F401,F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  whitenoise warns about a missing dir
# One test database per pytest process, so that parallel runs on one machine never drop each other's database.
_database = DATABASES["default"]  # noqa: F405
if _database["ENGINE"].endswith("sqlite3"):
    # A file beside the configured one (not in memory): the Celery workers that tests start share it.
    _name = os.path.basename(str(_database["NAME"]))
    _database.setdefault("TEST", {})["NAME"] = os.path.join(os.path.dirname(str(_database["NAME"])),
                                                            f"test_{_name}_{os.getpid()}")
else:
    _database.setdefault("TEST", {})["NAME"] = f"test_{_database['NAME']}_{os.getpid()}"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
