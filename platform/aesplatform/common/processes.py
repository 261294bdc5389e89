"""Child processes started from inside a Celery prefork (billiard) worker process: the one workaround.

Such a process is daemonic, and multiprocessing refuses children to daemonic processes (they could be orphaned);
its authkey is billiard's, which refuses to be pickled for a forkserver. Ours cannot be orphaned: the import pool
is shut down before the task returns and each of its children dies with its parent, and the DataLoader decode
workers (curation, training, pre-scoring) are daemonic themselves and end with this process. So the daemon flag
is lifted while the block runs and put back afterwards, and billiard's authkey is replaced once by a
multiprocessing one (it serves nothing multiprocessing could use). In a process that is not a pool child (a
`--pool solo` worker, the web process, a test) neither is there to lift and nothing changes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
from collections.abc import Iterator

_UNSET = object()


@contextlib.contextmanager
def children_allowed() -> Iterator[None]:
    config = multiprocessing.current_process()._config
    daemon = config.pop("daemon", _UNSET)
    if not isinstance(config.get("authkey"), multiprocessing.process.AuthenticationString):
        config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))
    try:
        yield
    finally:
        if daemon is not _UNSET:
            config["daemon"] = daemon
