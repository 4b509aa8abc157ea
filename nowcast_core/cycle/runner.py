"""Runs the forecast cycle in one thread: on request, coalesced, and as a periodic sweep.

- ``request()`` (an inbox event) asks for a cycle now; ``request(delay_s=...)`` later.
  Requests coalesce: any number of them that are due when a cycle starts give that one
  cycle (which takes everything present in the inbox). A request that arrives while a cycle
  runs gives exactly one follow-up cycle, whatever the number of such requests.
- The sweep: a cycle when none has started for ``sweep_interval_s`` (the safety net for missed
  events); the first one runs at start.
- Cycles never overlap: there is one thread. (Between processes the cycle's file lock keeps
  them apart.)

Plain threading, no Prefect: ``cycle`` is any callable taking the reason (``"sweep"``,
``"event"``, ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class CycleRunner:
    def __init__(self, cycle: Callable[[str], object], sweep_interval_s: float, *, name: str = "forecast-cycle"):
        self._cycle = cycle
        self.sweep_interval_s = float(sweep_interval_s)
        self._due: list[tuple[float, str]] = []  # (monotonic deadline, reason)
        self._next_sweep = time.monotonic()
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.cycles = 0

    def request(self, reason: str = "event", delay_s: float = 0.0) -> None:
        """Ask for a cycle ``delay_s`` seconds from now (coalesced with other requests)."""
        deadline = time.monotonic() + max(0.0, delay_s)
        with self._cond:
            # Coalesce: a pending request due no later than this one (and not much earlier) covers it.
            if any(deadline - 0.5 <= d <= deadline for d, _ in self._due):
                return
            self._due.append((deadline, reason))
            self._cond.notify()

    def start(self) -> "CycleRunner":
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop after the running cycle (if any) and wait for it."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _next(self) -> str | None:
        """Wait until a cycle is due; its reason (None: stopping)."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                due = [r for d, r in self._due if d <= now]
                if due:
                    self._due = [(d, r) for d, r in self._due if d > now]
                    return due[0]
                if now >= self._next_sweep:
                    return "sweep"
                wake = min([self._next_sweep, *(d for d, _ in self._due)])
                self._cond.wait(wake - now)
            return None

    def _loop(self) -> None:
        while (reason := self._next()) is not None:
            self._next_sweep = time.monotonic() + self.sweep_interval_s
            try:
                self._cycle(reason)
            except Exception:
                log.exception("forecast cycle failed; the next one retries")
            self.cycles += 1
