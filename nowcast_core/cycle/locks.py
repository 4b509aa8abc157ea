"""Advisory file locks: one cycle at a time, one daemon per home."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


class LockHeld(RuntimeError):
    """Another process holds the lock."""


@contextmanager
def file_lock(path: Path):
    """Hold an exclusive, non-blocking lock on ``path`` (released when the process dies, even by kill -9).

    The file names its holder while held and is emptied when the holder lets go; so what it yields is
    the holder that ended without letting go (killed, crashed, or the machine lost power), as the file
    names it, or None after a clean stop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text().strip() or "another process"
            raise LockHeld(f"{path} is held by {holder}") from None
        previous = os.read(fd, 200).decode(errors="replace").strip() or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}".encode(), 0)
        os.fsync(fd)
        yield previous
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
