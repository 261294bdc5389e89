"""Child processes started from inside a Celery prefork (billiard) worker process: the one workaround.

Such a process is daemonic, and multiprocessing refuses children to daemonic processes (they could be orphaned);
its authkey is billiard's, which refuses to be pickled for a forkserver. Ours cannot be orphaned: the import pool
is shut down before the task returns and each of its children dies with its parent, and the DataLoader decode
workers (curation, training, pre-scoring) are daemonic themselves and end with this process. So both are lifted
while the block runs and put back afterwards. (A `--pool solo` worker, or any process that is not a pool child,
is left as it is: nothing there needs lifting.)
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
    daemon, authkey = config.get("daemon", _UNSET), config.get("authkey", _UNSET)
    config.pop("daemon", None)
    if not isinstance(authkey, multiprocessing.process.AuthenticationString):
        config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))
    try:
        yield
    finally:
        for key, value in (("daemon", daemon), ("authkey", authkey)):
            if value is _UNSET:
                config.pop(key, None)
            else:
                config[key] = value
