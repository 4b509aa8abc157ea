"""Inbox events: a scan announced the moment it is complete, through plain callbacks.

The watcher (the ``watchdog`` package; inotify on Linux) calls ``on_scan(name, complete)`` for
every scan file that appears directly in the inbox (names starting with a dot are a
producer's temporary files and are ignored):

- ``complete=True``: the file was closed after writing (``IN_CLOSE_WRITE``) or renamed into
  the inbox (``IN_MOVED_TO``, from inside or outside the inbox). It is ingested without the
  settle time.
- ``complete=False``: the file was created (``IN_CREATE``): a writer may still be writing it.
  On Linux its close event follows; elsewhere (no close events) the settle time decides.

Nothing here knows about cycles or Prefect: the daemon wires ``on_scan`` to
:class:`ReadyFiles` (which names skip the settle time) and to a cycle trigger.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

log = logging.getLogger(__name__)

OnScan = Callable[[str, bool], None]


class ReadyFiles:
    """Names of inbox files announced complete by an event, until the next ingest takes them."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def take(self) -> frozenset[str]:
        """All names announced since the last ``take`` (and forget them)."""
        with self._lock:
            names, self._names = frozenset(self._names), set()
        return names


class InboxEventHandler(FileSystemEventHandler):
    """Turns watchdog events on ``inbox`` into ``on_scan(name, complete)`` calls."""

    def __init__(self, inbox: Path, on_scan: OnScan):
        self.inbox = Path(inbox).resolve()
        self.on_scan = on_scan

    def _announce(self, path: str | bytes, complete: bool) -> None:
        if not path:
            return
        p = Path(path.decode() if isinstance(path, bytes) else path)
        if p.parent.resolve() != self.inbox or p.name.startswith("."):
            return
        self.on_scan(p.name, complete)

    def on_closed(self, event: FileSystemEvent) -> None:
        self._announce(event.src_path, True)

    def on_moved(self, event: FileSystemEvent) -> None:
        self._announce(event.dest_path, True)

    def on_created(self, event: FileSystemEvent) -> None:
        self._announce(event.src_path, False)


def start_watcher(inbox: Path, on_scan: OnScan):
    """Start watching ``inbox`` (not its sub-folders) in a thread of watchdog's; returns the observer
    (``observer.stop(); observer.join()`` ends it). Raises OSError when the folder cannot be watched."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        # Full events: a file renamed in from outside the inbox is a move (complete), not a creation.
        observer = InotifyObserver(generate_full_events=True)
    else:
        from watchdog.observers import Observer

        observer = Observer()
    observer.schedule(InboxEventHandler(inbox, on_scan), str(inbox), recursive=False,
                      event_filter=[FileClosedEvent, FileMovedEvent, FileCreatedEvent])
    observer.daemon = True
    observer.start()
    return observer


class InboxWatch:
    """The inbox watcher that follows its folder: a deleted and re-created inbox leaves inotify watching
    the old, gone folder, so :meth:`check` (each sweep) starts it again on the new one."""

    def __init__(self, inbox: Path, on_scan: OnScan):
        self.inbox, self.on_scan = Path(inbox), on_scan
        self.observer = None
        self._identity = None
        self._stopped = False
        self._lock = threading.Lock()  # check (a scheduler thread) and stop (the daemon's) never interleave
        self._start()

    def _start(self) -> None:
        st = self.inbox.stat()  # OSError where there is no folder to watch
        self.observer = start_watcher(self.inbox, self.on_scan)
        self._identity = (st.st_dev, st.st_ino)

    def check(self) -> str | None:
        """Watch the inbox again if it was re-created since (or the watcher died); what was done, for
        the log, or None. A missing inbox is left to the cycle, which fails and says so."""
        with self._lock:
            if self._stopped:  # the daemon is stopping: a watcher it stopped is not to be started again
                return None
            try:
                st = self.inbox.stat()
            except OSError:
                return None
            watching = self.observer.is_alive() and all(e.is_alive() for e in self.observer.emitters)
            if (st.st_dev, st.st_ino) == self._identity and watching:  # a deleted folder stops its emitter
                return None
            self._stop_observer()
            self._start()
            return f"the inbox {self.inbox} was re-created: watching it again"

    def stop(self) -> None:
        """Stop watching for good (:meth:`check` then does nothing)."""
        with self._lock:
            self._stopped = True
            self._stop_observer()

    def _stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(5)


#: Whether the watcher sees "closed after writing" events (inotify); elsewhere a created file
#: is checked again once the settle time has passed.
CLOSE_EVENTS = sys.platform.startswith("linux")


def announcer(ready: ReadyFiles, request: Callable[..., None], settle_seconds: float) -> OnScan:
    """The ``on_scan`` callback of a daemon: a complete scan is marked ready (no settle time) and
    asks for a cycle now; a created one, where no close event will follow, asks for a cycle once
    the settle time has passed."""

    def on_scan(name: str, complete: bool) -> None:
        if complete:
            ready.add(name)
            request("event")
        elif not CLOSE_EVENTS:
            request("event", delay_s=settle_seconds + 0.1)

    return on_scan
