"""Strict reader of the feed's scan files (``RDR_YYYYMMDDHHMM.npz``).

Never unpickles. Every fault the inbox really sees has its own reason code
(``FrameError.kind``) and a message that says what is wrong in plain words. A file is read
whole only up to :data:`MAX_FILE_BYTES`; its archive is checked before anything is
decompressed (see :mod:`nowcast_core.io.safe_npz`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nowcast_core.contract import SCAN_INTERVAL
from nowcast_core.io.errors import FAULT_KINDS, FrameError, NotReadyError  # noqa: F401 - re-exported
from nowcast_core.io.safe_npz import MAX_FILE_BYTES, parse_scan_npz
from nowcast_core.times import iso_minutes

#: The whole name, ASCII digits only (``re.fullmatch``: no trailing newline, no other scripts' digits).
NAME_PATTERN = re.compile(r"RDR_([0-9]{12})\.npz")


@dataclass(frozen=True)
class Frame:
    """One validated radar scan."""

    scan_time: datetime
    frame: np.ndarray  # uint8 (120, 120), row 0 north
    nodata: np.ndarray  # bool (120, 120), True where the radar saw nothing
    checksum: str  # sha256 of the file's bytes


@dataclass(frozen=True)
class ScanFile:
    """A validated scan with the exact bytes it was read from and the file's status when read."""

    frame: Frame
    data: bytes
    stat: os.stat_result


def scan_time_from_name(name: str) -> datetime:
    """Scan time (UTC) encoded in a file name; :class:`FrameError` ``bad_name`` if none."""
    m = NAME_PATTERN.fullmatch(name)
    if not m:
        raise FrameError("bad_name", f"{name!r} does not match RDR_YYYYMMDDHHMM.npz")
    try:
        t = datetime.strptime(m.group(1), "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        raise FrameError("bad_name", f"{name!r} holds no valid date and time") from None
    if t.minute % 10:
        raise FrameError("bad_name", f"{name!r}: minutes {t.minute:02d} are not a multiple of 10")
    return t


def frame_file_name(scan_time: datetime) -> str:
    """The contract's file name of a scan time."""
    return f"RDR_{scan_time.astimezone(UTC):%Y%m%d%H%M}.npz"


def _check_ready(st: os.stat_result, name: str, settle_seconds: float, now_epoch: float) -> None:
    if now_epoch - st.st_mtime < settle_seconds:
        raise NotReadyError(f"{name} was modified {now_epoch - st.st_mtime:.1f} s ago")


def read_bounded(path: Path, *, follow_symlinks: bool = True,
                 max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and its status, reading at most ``max_bytes``.

    With ``follow_symlinks=False`` a symbolic link is refused (``O_NOFOLLOW``), never opened
    through. A fifo or device is never waited on (``O_NONBLOCK``). OSErrors other than
    these refusals propagate: they are the machine's, not the file's.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise FrameError("symlink", f"{path.name!r} is a symbolic link; links are never followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrameError("not_regular", f"{path.name!r} is not a regular file")
        if st.st_size > max_bytes:
            raise FrameError("oversized",
                             f"{path.name!r} has {st.st_size} bytes; a scan file needs at most {max_bytes}")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise FrameError("oversized", f"{path.name!r} grew beyond {max_bytes} bytes while being read")
        return b"".join(chunks), st
    finally:
        os.close(fd)


def read_scan(
    path: str | Path,
    *,
    now: datetime | None = None,
    settle_seconds: float = 0.0,
    future_tolerance: timedelta = timedelta(minutes=15),
    earliest: datetime | None = None,
    follow_symlinks: bool = True,
) -> ScanFile:
    """Read and validate one scan file, keeping the bytes read; the options are :func:`read_frame`'s."""
    path = Path(path)
    scan_time = scan_time_from_name(path.name)
    st = path.stat() if follow_symlinks else path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise FrameError("symlink", f"{path.name!r} is a symbolic link; links are never followed")
    _check_ready(st, path.name, settle_seconds, time.time())
    data, st = read_bounded(path, follow_symlinks=follow_symlinks)
    frame, nodata = parse_scan_npz(data, path.name)
    if earliest is not None and scan_time < earliest:
        raise FrameError("before_earliest", f"scan time {iso_minutes(scan_time)} is before the earliest accepted "
                         f"{iso_minutes(earliest)}")
    if now is not None and scan_time > now + future_tolerance:
        raise FrameError("future", f"scan time {iso_minutes(scan_time)} is after now ({iso_minutes(now)})")
    checksum = hashlib.sha256(data).hexdigest()
    return ScanFile(Frame(scan_time=scan_time, frame=frame, nodata=nodata, checksum=checksum), data, st)


def read_frame(path: str | Path, **options) -> Frame:
    """Read and validate one scan file.

    Parameters
    ----------
    path : path of an ``RDR_YYYYMMDDHHMM.npz`` file.
    now : the current time (UTC); scans later than ``now + future_tolerance`` are rejected.
        ``None`` disables the future check.
    settle_seconds : a file modified less than this long ago raises :class:`NotReadyError`
        (it may still be being written).
    earliest : scans before this time are rejected (``before_earliest``); ``None``: no limit.
    follow_symlinks : ``False`` refuses a symbolic link (``symlink``) instead of reading its target.

    Returns
    -------
    Frame

    Raises
    ------
    FrameError
        The file breaks the contract; ``kind`` says how. Whatever the file's bytes are, no
        other exception comes from them (memory is bounded, nothing is unpickled).
    NotReadyError
        The file is too fresh to judge.
    OSError
        The file could not be opened or read (permissions, I/O error, vanished).
    """
    return read_scan(path, **options).frame


def read_folder(folder: str | Path) -> list[Frame]:
    """Every valid scan in a folder, oldest first (invalid files are skipped)."""
    frames = []
    for p in sorted(Path(folder).glob("RDR_*.npz")):
        try:
            frames.append(read_frame(p))
        except FrameError:
            continue
    frames.sort(key=lambda f: f.scan_time)
    return frames


def consecutive_windows(scan_times: list[datetime], length: int) -> list[int]:
    """Start indices ``i`` such that ``scan_times[i : i + length]`` are consecutive 10-minute scans."""
    starts = []
    for i in range(len(scan_times) - length + 1):
        if all(scan_times[i + k + 1] - scan_times[i + k] == SCAN_INTERVAL for k in range(length - 1)):
            starts.append(i)
    return starts
