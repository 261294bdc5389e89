"""Every knob goes through settings.py from the environment and is documented in README.md's configuration tables;
the platform's code reads settings, never the environment."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS = REPO / "platform" / "aesplatform" / "settings.py"
ENV_READERS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "path", "db_url", "cache_url",
               "email_url", "search_url", "get_value", "__call__"}
# Deployment files read these prefixes from the environment themselves (gunicorn's config, compose, `make run`).
DEPLOY_FILES = ("deploy/gunicorn.conf.py", "docker-compose.yml", "scripts/run_platform.sh")
KNOB = re.compile(r"\b((?:AESP|DJANGO|WEB)_[A-Z0-9_]+)")


def _settings_env_reads() -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ENV_READERS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "env" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _deploy_env_reads() -> set[str]:
    names = set()
    gunicorn = (REPO / DEPLOY_FILES[0]).read_text()
    names |= set(re.findall(r"""(?:_setting|os\.environ\.get|os\.getenv)\(\s*["']([A-Z0-9_]+)""", gunicorn))
    for path in DEPLOY_FILES[1:]:
        names |= set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / path).read_text()))
    return {n for n in names if KNOB.fullmatch(n)}


def _documented() -> set[str]:
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def test_settings_reads_the_knobs_it_is_expected_to():
    reads = _settings_env_reads()
    # the parser sees settings.py's reads (a regression here would make the documentation check vacuous)
    assert {"DJANGO_ENV", "DATABASE_URL", "AESP_TRAINING_ROOT", "AESP_PRESCORE_NUM_WORKERS", "AESP_CLIP_MODEL",
            "AESP_FILTER_NUM_WORKERS", "AESP_JOB_SWEEP_S"} <= reads


def test_every_knob_is_documented_in_the_readme():
    undocumented = sorted((_settings_env_reads() | _deploy_env_reads()) - _documented())
    assert not undocumented, f"add these to README.md's configuration table: {undocumented}"


def test_the_platform_code_reads_settings_not_the_environment():
    """os.environ / os.getenv only in the settings modules (and to name the settings module at start-up)."""
    offenders = []
    for root in ("platform", "workers", "annotator_ui"):
        for path in (REPO / root).rglob("*.py"):
            if path.name in ("settings.py", "settings_test.py") or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    names_settings_module = (target == "os.environ.setdefault" and node.args
                                             and isinstance(node.args[0], ast.Constant)
                                             and node.args[0].value == "DJANGO_SETTINGS_MODULE")
                    if target.startswith(("os.environ", "os.getenv")) and not names_settings_module:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {target}")
                elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} os.environ[...]")
    assert not offenders, offenders


def test_importing_settings_writes_nothing_and_django_start_creates_the_local_folders(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AESP_", "CELERY_", "DATABASE_"))}
    env.update(DJANGO_ENV="development", AESP_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="aesplatform.settings",
               PYTHONPATH=str(REPO / "platform"))
    subprocess.run([sys.executable, "-c", "import aesplatform.settings"], cwd=REPO, env=env, check=True, timeout=60)
    assert not var.exists()
    subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, check=True, timeout=120,
                   capture_output=True)
    for folder in ("celery/queue", "celery/processed", "celery/control", "celery/results"):
        assert (var / folder).is_dir(), folder  # the development profile: SQLite in var/, the filesystem broker
