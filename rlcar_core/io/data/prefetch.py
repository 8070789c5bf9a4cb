"""A background thread that reads batches ahead of the update, so the update never waits on the disk.

One producer thread pulls items from the wrapped iterator, in order, into a bounded queue; the
consumer takes them out in that same order. The batches are therefore exactly the ones the plain
iterator yields (its random generator advances ahead of the consumer, which changes nothing it
yields). The queue's bound keeps memory at `depth` batches. `transform` (for example placing a batch
on the devices) runs in the thread too, so it also overlaps the update.

The thread stops when the iterator ends, when the producer raises (the error is re-raised in the
consumer at the point it would have surfaced), and when the consumer calls `close()` or leaves the
`with` block, whether it finished, stopped early on Ctrl-C or raised: `close()` joins the thread.

    with Prefetcher(iterate_frames(...), depth=4) as batches:
        for batch in batches:
            ...
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_DEPTH = 4
_POLL_SECONDS = 0.05  # how often a blocked producer looks at the stop flag


class _End:
    """The producer's last message: the iterator ended (error None) or raised `error`."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


class Prefetcher:
    """Iterates over `iterator` (optionally `transform`ed) from a background thread, `depth` ahead."""

    def __init__(
        self,
        iterator: Iterator[Any],
        depth: int = DEFAULT_DEPTH,
        transform: Callable[[Any], Any] | None = None,
        name: str = "rlcar-prefetch",
    ):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._source = iterator
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        # A daemon thread as a last resort only: close() is what stops it, and joins it.
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Queue `item`, waiting for room; False when the consumer closed meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._transform is not None:
                    item = self._transform(item)
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who re-raises it
            self._put(_End(error))

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            self._thread.join()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item it is reading, then exits)."""
        self._stop.set()
        self._finished = True
        while self._thread.is_alive():
            try:  # make room, in case the producer is blocked on a full queue
                self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                pass
        self._thread.join()
        close_source = getattr(self._source, "close", None)
        if close_source is not None:  # a generator: run its cleanup now, in this thread
            close_source()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
