"""Writes that must not be lost when the store refuses them (audit entries).

``await LateWrites.of(store).write(fn)`` runs ``fn(conn)`` in a store transaction now if
it can. If the store refuses (disk full, I/O error), the write is kept in memory, in
order, and retried every ``RETRY_S`` until the store takes it; later writes queue behind
it so the order holds. The caller is not failed: what it records has happened already
(a login, a command sent), and the record of it will follow.

At most ``MAX_HELD`` writes are kept; past that the oldest are dropped, counted
(:attr:`LateWrites.dropped`) and logged. The log says the store is failing once a
minute, not once per write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final

from maestro.diskstate import Throttle
from maestro.errors import StoreError
from maestro.store.core import Store

log = logging.getLogger("arete.maestro.late_writes")

RETRY_S: Final = 1.0
MAX_HELD: Final = 10_000

Write = Callable[[sqlite3.Connection], Any]


class LateWrites:
    """One per store (:meth:`of`); call from the store's event loop."""

    _by_store: ClassVar[weakref.WeakKeyDictionary[Store, LateWrites]] = weakref.WeakKeyDictionary()

    def __init__(self, store: Store, *, retry_s: float = RETRY_S, max_held: int = MAX_HELD) -> None:
        self._store = store
        self._retry_s = retry_s
        self._held: deque[Write] = deque()
        self._max_held = max_held
        self._task: asyncio.Task[None] | None = None
        self._throttle = Throttle()
        self.failing: str | None = None  # the store's error while writes are held
        self.dropped = 0  # writes given up because more than max_held were waiting

    @classmethod
    def of(cls, store: Store) -> LateWrites:
        found = cls._by_store.get(store)
        if found is None:
            found = cls._by_store[store] = cls(store)
        return found

    @property
    def held(self) -> int:
        return len(self._held)

    async def write(self, fn: Write) -> None:
        """Store ``fn`` now, or keep it (in order) until the store takes it."""
        if not self._held:
            try:
                await self._store.write(fn)
            except StoreError as exc:
                self._keep(fn, exc)
            return
        self._keep(fn, None)

    def _keep(self, fn: Write, error: StoreError | None) -> None:
        if len(self._held) >= self._max_held:
            self._held.popleft()
            self.dropped += 1
        self._held.append(fn)
        if error is not None:
            self._failed(error)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._retry(), name="store-late-writes"
            )

    def _failed(self, error: StoreError) -> None:
        self.failing = str(error)
        if self._throttle.ready(time.monotonic()):
            kv = {
                "error": str(error),
                "held": len(self._held),
                "dropped": self.dropped,
                "repeats": self._throttle.suppressed,
            }
            log.error(
                "audit entries not stored; kept in memory and retried until stored",
                extra={"kv": kv},
            )

    async def _retry(self) -> None:
        while self._held:
            await asyncio.sleep(self._retry_s)
            batch = list(self._held)

            def write_all(conn: sqlite3.Connection, batch: list[Write] = batch) -> None:
                for fn in batch:
                    fn(conn)

            try:
                await self._store.write(write_all)
            except StoreError as exc:
                self._failed(exc)
                continue
            done = set(map(id, batch))
            self._held = deque(fn for fn in self._held if id(fn) not in done)
        if self.failing is not None:
            log.warning("audit entries stored again after a store failure")
        self.failing = None
        self._throttle.reset()
