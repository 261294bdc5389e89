"""gunicorn's sync worker, woken alone for a new connection (deploy/gunicorn.conf.py serves with it).

gunicorn's sync workers wait for connections with select() on the shared listening socket, so every idle worker
wakes for each new connection and all but one find nothing to accept: with 5 workers on 2 cores and requests
arriving one by one, those wasted wake-ups cost about a millisecond of CPU per next-task + submit cycle
(bench/taskfetch.py --rate). Here the idle workers wait in epoll with EPOLLEXCLUSIVE on the listener (Linux 4.5+),
and the kernel wakes one of them. The rest of the worker (accepting while connections queue, the heartbeat, the
signal pipe, shutdown) is gunicorn's own. Where epoll or EPOLLEXCLUSIVE is missing it behaves as the sync worker.
"""

from __future__ import annotations

import errno
import os
import select

from gunicorn.workers.sync import StopWaiting, SyncWorker


class ExclusiveWakeSyncWorker(SyncWorker):
    _poller = None

    def run(self):
        if len(self.sockets) == 1 and hasattr(select, "EPOLLEXCLUSIVE"):
            self._poller = select.epoll()
            self._poller.register(self.sockets[0].fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            self._poller.register(self.PIPE[0], select.EPOLLIN)
        try:
            super().run()
        finally:
            if self._poller is not None:
                self._poller.close()

    def wait(self, timeout):
        if self._poller is None:
            return super().wait(timeout)
        self.notify()
        try:
            events = self._poller.poll(timeout)
        except OSError as exc:
            if exc.errno == errno.EBADF:  # the listener was closed: gunicorn is stopping this worker
                raise StopWaiting from exc
            raise
        ready = []
        for fd, _ in events:
            if fd == self.PIPE[0]:
                os.read(self.PIPE[0], 1)
            else:
                ready.append(self.sockets[0])
        return ready
