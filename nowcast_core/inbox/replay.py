"""Replay an archive of scans into an inbox, in time order, faster than real time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from nowcast_core.io.files import copy_verified
from nowcast_core.io.frames import FrameError, scan_time_from_name

log = logging.getLogger(__name__)


def replay_folder(folder: str | Path, inbox: str | Path, *, speed: float = 60.0) -> int:
    """Copy every ``RDR_*.npz`` of ``folder`` (recursively) into ``inbox`` in scan-time order.

    Each file is written under a hidden temporary name and renamed, as a good producer does.
    Between two scans the replay waits their real time difference divided by ``speed``
    (``speed <= 0`` waits not at all). Returns the number of files copied.
    """
    scans = []
    for p in Path(folder).rglob("RDR_*.npz"):
        try:
            scans.append((scan_time_from_name(p.name), p))
        except FrameError:
            log.warning("replay skips %s: not a scan file name", p.name)
    scans.sort()
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    previous = None
    for scan_time, path in scans:
        if previous is not None and speed > 0:
            time.sleep(max(0.0, (scan_time - previous).total_seconds() / speed))
        copy_verified(path, inbox / path.name)
        previous = scan_time
    return len(scans)


def demo_source(home: Path, exclude_events: set[str] = frozenset()) -> Path:
    """Scans for the demo: the wettest window of a real event in ``../shared/data/radar`` that is not
    in ``exclude_events`` (the events the model was trained on, so the skill shown is honest),
    else a generated sequence, saying why."""
    shared = Path("../shared/data/radar")
    if shared.is_dir():
        events = sorted(p for p in shared.iterdir() if p.is_dir() and p.name.endswith("-w0")
                        and p.name.removesuffix("-w0") not in exclude_events and any(p.glob("RDR_*.npz")))
        if events:
            return events[0]
        log.info("demo: the model was trained on every event in %s, so it replays a generated sequence "
                 "(its skill on an event it has seen would flatter it)", shared.resolve())
    else:
        log.info("demo: no %s here, so it replays a generated sequence", shared)
    from nowcast_core.io.sample import write_sequence

    target = Path(home) / "sample"
    if not any(target.glob("RDR_*.npz")):
        write_sequence(target, n_scans=72, seed=0)
    return target


def start_demo_replay(settings, speed: float = 600.0, exclude_events: set[str] = frozenset()):
    """Replay the demo scans (see :func:`demo_source`) into the inbox in a background thread (one scan a second)."""
    import threading

    source = demo_source(settings.home, exclude_events)
    log.info("demo: replaying %s into %s, %g times faster than real time", source, settings.inbox, speed)
    thread = threading.Thread(target=replay_folder, args=(source, settings.inbox), kwargs={"speed": speed},
                              name="demo-replay", daemon=True)
    thread.start()
    return thread
