"""Fetch the next page while the current one is being written.

An export alternates between waiting for Kumulos and working on a page (decode, dedupe, encode,
hash, write). A single background thread that keeps up to ``depth`` pages ready overlaps the two,
so the export runs at the pace of the slower side rather than of both added up. Memory stays
bounded by ``depth`` pages. The hook (and its session) is only ever used by that one thread, and
an error it meets is raised in the consumer, in order, as if the pages were fetched inline.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    """An exception raised by the producer, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterate ``source`` in a daemon thread, ``depth`` items ahead; use as a context manager."""

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="kumulos-export-prefetch", daemon=True)

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._consume()

    def __exit__(self, *exc_info: object) -> None:
        """Tell the thread to stop; it exits after the request it may be in (never blocking on the queue)."""
        self._stop.set()
        self._thread.join(timeout=0.2)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
        except BaseException as error:
            self._put(_Failure(error))
            return
        self._put(_DONE)

    def _consume(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
