"""The Celery app of fault-injection workers: the real app (`aesplatform.celery`), with the functions named in
AESP_FAULT_SLOW made to sleep before each call, so that a test can kill -9 the worker while a job is half done.

AESP_FAULT_SLOW: `module:attribute=seconds` entries separated by `;` (attribute may be `Class.method`), e.g.
`aesplatform.catalog.services:_store_chunk=1.0`. Nothing else changes: same tasks, broker, database and code.

AESP_FAULT_PRELOAD: modules (comma-separated) each pool process imports when it starts, then logs "preloaded": a
test that needs its workers ready at once (the first import of torch takes many seconds on a loaded machine) waits
for that line.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import time

from celery.signals import worker_process_init

from aesplatform.celery import app

__all__ = ["app"]


def _slowed(original, seconds: float):
    @functools.wraps(original)
    def slowed(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    return slowed


@worker_process_init.connect
def _slow_down(**kwargs) -> None:
    for entry in filter(None, os.environ.get("AESP_FAULT_SLOW", "").split(";")):
        target, seconds = entry.rsplit("=", 1)
        module_name, attribute = target.split(":")
        owner = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, _slowed(getattr(owner, name), float(seconds)))
    preload = [name for name in os.environ.get("AESP_FAULT_PRELOAD", "").split(",") if name]
    for module_name in preload:
        importlib.import_module(module_name)
    if preload:
        logging.getLogger(__name__).warning("preloaded: %s", ", ".join(preload))
