"""PostgreSQL advisory locks (jobs are claimed by aesplatform.common.jobs instead: a guarded UPDATE).

Every namespace is listed here, so that two kinds of job can never share one by accident. On SQLite (the
embedded default, one worker) the locks are always granted: writes are serialized by the database there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

from django.db import connection


class LockNamespace(IntEnum):
    # 0x46524E and 7_000_007..7_000_009 were the per-job locks of filter runs, exports, training and pre-scoring,
    # replaced by the common job claim (aesplatform.common.jobs); not reused, so that an old worker still running
    # during an upgrade can never collide with a new use.
    PROMOTION = 7_000_010


@contextmanager
def advisory_lock(namespace: LockNamespace, key: int) -> Iterator[bool]:
    """Try a session-level lock for the block; yields whether it was acquired. Released when the worker dies."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [int(namespace), key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [int(namespace), key])


def advisory_xact_lock(namespace: LockNamespace, key: int) -> bool:
    """Try a lock held until the current transaction ends."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [int(namespace), key])
        return bool(cursor.fetchone()[0])
