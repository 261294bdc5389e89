"""A process's one loaded scoring model, kept for the next job that uses the same model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoadedModelCache(Generic[T]):
    """At most one loaded model, under the key of everything that decides what it computes.

    Process-wide on purpose: a worker process scores job after job with the same model (the promoted one, the
    filter's CLIP), and loading one takes seconds (CLIP) to minutes (an 8B checkpoint); holding one at a time
    bounds the memory. Its owner is the module that loads the models (one instance each, named in capitals);
    a job never gets another model than its key names, and `clear()` drops the model (tests, a bench that puts
    its own with `put`). The lock makes two threads that want the same model wait for one load.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Hashable | None = None
        self._model: T | None = None

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model under `key`, loaded with `load()` when another one (or none) is held."""
        with self._lock:
            if self._model is None or self._key != key:
                self._key, self._model = None, None  # the old model goes before the new one loads (memory)
                model = load()
                self._key, self._model = key, model
            return self._model

    def put(self, key: Hashable, model: T) -> None:
        with self._lock:
            self._key, self._model = key, model

    def clear(self) -> None:
        with self._lock:
            self._key, self._model = None, None
