"""A heap of deadlines keyed by command id (pure: the caller says what time it is).

The service sleeps until :meth:`Deadlines.next_due` instead of scanning every open
command. Moving or dropping a deadline leaves the old heap entry behind; it is skipped
when it surfaces (cheaper than re-heapifying), and the heap is rebuilt when such stale
entries outnumber the live ones.
"""

from __future__ import annotations

import heapq


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def set(self, key: str, when: float) -> bool:
        """Set (or move) ``key``'s deadline; True when it became the earliest one."""
        if self._due.get(key) == when:
            return False
        earliest = self.next_due()
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(due, k) for k, due in self._due.items()]
            heapq.heapify(self._heap)
        return earliest is None or when < earliest

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """The earliest live deadline, or None when there is none."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest first."""
        due: list[str] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, key = heapq.heappop(self._heap)
            del self._due[key]
            due.append(key)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
