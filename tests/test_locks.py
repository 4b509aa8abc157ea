"""The one-daemon-per-home lock: held by one process, released by any end, and it tells an unclean end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nowcast_core.cycle.locks import LockHeld, file_lock

HOLD = """
import sys, time
from pathlib import Path
from nowcast_core.cycle.locks import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_holder_killed_by_signal_9_is_named_by_the_next_one_and_a_clean_stop_is_not(tmp_path):
    lock = tmp_path / "daemon.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid} since "):
            with file_lock(lock):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs
        holder.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the kernel lets go of the lock with the process
        try:
            with file_lock(lock) as unclean:
                assert unclean is not None and unclean.startswith(f"pid {holder.pid} since ")
            break
        except LockHeld:
            time.sleep(0.1)
    else:
        pytest.fail("the lock of a killed process was never released")
    assert lock.read_text() == ""  # this holder let go cleanly
    with file_lock(lock) as unclean:
        assert unclean is None and lock.read_text().startswith(f"pid {os.getpid()} since ")
