"""Strict reader of the feed's scan files (``RDR_YYYYMMDDHHMM.npz``).

Never unpickles. Every fault the inbox really sees has its own reason code
(``FrameError.kind``) and a message that says what is wrong in plain words.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nowcast_core.contract import GRID_SHAPE, SCAN_INTERVAL
from nowcast_core.times import iso_minutes

NAME_PATTERN = re.compile(r"^RDR_(\d{12})\.npz$")

#: Reason codes, one per fault kind of the spec.
FAULT_KINDS = {
    "bad_name": "the name is not RDR_YYYYMMDDHHMM.npz with minutes a multiple of 10",
    "empty": "zero-byte file",
    "corrupt": "not a readable .npz archive (truncated or damaged)",
    "pickled": "holds object arrays that would need pickle to load",
    "missing_frame": "no 'frame' array in the archive",
    "wrong_shape": "array shape is not 120 x 120",
    "nan": "float array containing NaN",
    "out_of_range": "pixel values outside 0..255",
    "wrong_dtype": "array dtype is not the contract's",
    "bad_nodata": "'nodata' is not a 120 x 120 bool array",
    "future": "scan time is in the future",
    "conflicting_duplicate": "a different file for a scan already registered",
}


class FrameError(ValueError):
    """A scan file that breaks the contract. ``kind`` is one of :data:`FAULT_KINDS`."""

    def __init__(self, kind: str, detail: str):
        assert kind in FAULT_KINDS, kind
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


class NotReadyError(RuntimeError):
    """The file may still be being written; look again at the next poll."""


@dataclass(frozen=True)
class Frame:
    """One validated radar scan."""

    scan_time: datetime
    frame: np.ndarray  # uint8 (120, 120), row 0 north
    nodata: np.ndarray  # bool (120, 120), True where the radar saw nothing
    checksum: str  # sha256 of the file's bytes


def scan_time_from_name(name: str) -> datetime:
    """Scan time (UTC) encoded in a file name; :class:`FrameError` ``bad_name`` if none."""
    m = NAME_PATTERN.match(name)
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


def _check_ready(path: Path, settle_seconds: float, now_epoch: float) -> int:
    st = path.stat()
    if now_epoch - st.st_mtime < settle_seconds:
        raise NotReadyError(f"{path.name} was modified {now_epoch - st.st_mtime:.1f} s ago")
    return st.st_size


def _validate_frame(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == object:
        raise FrameError("pickled", "'frame' is an object array")
    if arr.shape != GRID_SHAPE:
        raise FrameError("wrong_shape", f"'frame' has shape {arr.shape}, expected {GRID_SHAPE}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise FrameError("nan", f"'frame' is {arr.dtype} with {int(np.isnan(arr).sum())} NaN values")
    if arr.dtype.kind in "fiu":
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if lo < 0 or hi > 255:
            raise FrameError("out_of_range", f"'frame' values span {lo:g}..{hi:g}, expected 0..255")
    raise FrameError("wrong_dtype", f"'frame' is {arr.dtype}, expected uint8")


def _validate_nodata(arr: np.ndarray | None) -> np.ndarray:
    if arr is None:
        return np.zeros(GRID_SHAPE, dtype=bool)
    if arr.dtype == object:
        raise FrameError("pickled", "'nodata' is an object array")
    if arr.shape != GRID_SHAPE or arr.dtype != np.bool_:
        raise FrameError("bad_nodata", f"'nodata' is {arr.dtype} {arr.shape}, expected bool {GRID_SHAPE}")
    return arr


def read_frame(
    path: str | Path,
    *,
    now: datetime | None = None,
    settle_seconds: float = 0.0,
    future_tolerance: timedelta = timedelta(minutes=15),
) -> Frame:
    """Read and validate one scan file.

    Parameters
    ----------
    path : path of an ``RDR_YYYYMMDDHHMM.npz`` file.
    now : the current time (UTC); scans later than ``now + future_tolerance`` are rejected.
        ``None`` disables the future check.
    settle_seconds : a file modified less than this long ago raises :class:`NotReadyError`
        (it may still be being written).

    Returns
    -------
    Frame

    Raises
    ------
    FrameError
        The file breaks the contract; ``kind`` says how.
    NotReadyError
        The file is too fresh to judge.
    """
    path = Path(path)
    scan_time = scan_time_from_name(path.name)
    size = _check_ready(path, settle_seconds, time.time())
    if size == 0:
        raise FrameError("empty", f"{path.name} has zero bytes")
    data = path.read_bytes()
    checksum = hashlib.sha256(data).hexdigest()
    if not data.startswith(b"PK\x03\x04"):
        if data.startswith(b"\x93NUMPY"):
            raise FrameError("corrupt", f"{path.name} is a bare .npy array, not an .npz archive")
        if data.startswith(b"\x80"):
            raise FrameError("pickled", f"{path.name} is a pickle, not an .npz archive")
        raise FrameError("corrupt", f"{path.name} is not a zip (.npz) archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "frame" not in npz.files:
                raise FrameError("missing_frame", f"{path.name} holds {sorted(npz.files)}, no 'frame'")
            frame = _validate_frame(npz["frame"])
            nodata = _validate_nodata(npz["nodata"] if "nodata" in npz.files else None)
    except FrameError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise FrameError("pickled", f"{path.name}: {exc}") from None
        raise FrameError("corrupt", f"{path.name}: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise FrameError("corrupt", f"{path.name}: {type(exc).__name__}: {exc}") from None
    if now is not None and scan_time > now + future_tolerance:
        raise FrameError("future", f"scan time {iso_minutes(scan_time)} is after now ({iso_minutes(now)})")
    return Frame(scan_time=scan_time, frame=np.ascontiguousarray(frame), nodata=nodata, checksum=checksum)


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
