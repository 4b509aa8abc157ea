"""What every request reads: the installation's service (settings, database, dams), a clock, caches."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from nowcast_core.config import Settings
from nowcast_core.cycle.service import Service


def utc_now() -> datetime:
    return datetime.now(UTC)


class Memo:
    """A small thread-safe LRU with optional time-to-live (seconds)."""

    def __init__(self, max_items: int = 128, ttl_s: float | None = None):
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._max, self._ttl = max_items, ttl_s

    def get(self, key, make: Callable):
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and (self._ttl is None or time.monotonic() - hit[0] < self._ttl):
                self._data.move_to_end(key)
                return hit[1]
        value = make()
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
        return value


class WebContext:
    """One per application: never writes to the database (the service is used for reading only)."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now):
        self.settings = settings
        self.service = Service(settings, create=False)  # read-only: never makes a folder (a deleted inbox shows)
        self.sessions = self.service.sessions
        self.dams = self.service.dams
        self.dam_ids = [d.id for d in self.dams]
        self.clock = clock
        self.images = Memo(max_items=256)   # rendered PNGs by (kind, time, lead, checksum)
        self.live = Memo(max_items=256, ttl_s=2.0)  # answers shared by concurrent requests for 2 s
        self.scan_means = Memo(max_items=2048)  # catchment means per archived scan (immutable)

    def close(self) -> None:
        self.service.close()
