"""Helpers for the inbox tests: good and faulty scan files, real radar, counting files.

Imported by ``tests/test_*.py`` as ``helpers_frames`` (tests/ is on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nowcast_core.io import frame_file_name, scan_time_from_name

GRID = (120, 120)
OLD_AGE_S = 3600.0
#: Real radar event used by the event tests (46 scans, 2010-08-26 00:00 .. 07:30 UTC).
EVENT = "knmi-w0"
EVENT_START = datetime(2010, 8, 26, 0, 0, tzinfo=UTC)
#: Valid-looking names for the faulty files: a day before the event, so never a real scan.
FAULT_DAY = datetime(2010, 8, 25, 0, 0, tzinfo=UTC)
#: Earliest scan time the tests accept (the setting's default).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def minutes(k: int) -> timedelta:
    return timedelta(minutes=10 * k)


def good_frame(seed: int = 0) -> np.ndarray:
    """A plausible uint8 120 x 120 frame: dry background with a rain cell."""
    rng = np.random.default_rng(seed)
    frame = np.zeros(GRID, np.uint8)
    frame[40:80, 50:90] = rng.integers(60, 200, size=(40, 40), dtype=np.uint8)
    return frame


def npz_bytes(*, compressed: bool = True, **arrays) -> bytes:
    """The bytes of an .npz archive holding ``arrays`` (np.savez or np.savez_compressed)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of raw ``members`` (name -> bytes), written with ``compression``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_file(folder: Path, name: str, data: bytes, *, age_s: float = OLD_AGE_S) -> Path:
    """Write ``data`` to ``folder/name``; its mtime is set ``age_s`` seconds in the past (0: now)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def write_scan(folder: Path, scan_time: datetime, frame: np.ndarray, nodata: np.ndarray | None = None,
               *, compressed: bool = True) -> Path:
    arrays = {"frame": frame} if nodata is None else {"frame": frame, "nodata": nodata}
    return write_file(folder, frame_file_name(scan_time), npz_bytes(compressed=compressed, **arrays))


class Tripwire:
    """Unpickling an instance creates the directory ``marker`` (proof that something unpickled)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def damaged_compressed_archive() -> bytes:
    """A savez_compressed archive whose deflate stream is damaged (zip directory intact): zlib.error."""
    frame = np.zeros(GRID, np.uint8)
    frame[50:60, 50:60] = 150
    data = npz_bytes(frame=frame)
    for i in range(60, len(data) - 100):
        damaged = bytearray(data)
        damaged[i:i + 20] = b"\xff" * 20
        try:
            with np.load(io.BytesIO(bytes(damaged))) as npz:
                npz["frame"]
        except zlib.error:
            return bytes(damaged)
        except Exception:  # noqa: BLE001 - another failure mode; look for a zlib.error one
            continue
    raise AssertionError("could not make a damaged deflate stream")


def fault_files(tripwire_marker: Path | None = None) -> list[tuple[str, bytes, str]]:
    """One file (name, bytes, expected FrameError.kind) per fault kind visible in the file alone.

    (``conflicting_duplicate`` needs a registered scan first, ``symlink`` and ``not_regular`` are
    not plain files, ``unreadable`` is the catch-all no known file reaches; see the tests.)
    """
    t = lambda k: frame_file_name(FAULT_DAY + minutes(k))  # noqa: E731
    good = good_frame(1)
    obj = np.empty(2, dtype=object)
    obj[0] = Tripwire(tripwire_marker) if tripwire_marker else "x"
    obj[1] = None
    return [
        ("notes.txt", b"radar notes, not a scan\n", "bad_name"),
        ("RDR_202001011005.npz", npz_bytes(frame=good), "bad_name"),  # minutes not a multiple of 10
        (t(0), b"", "empty"),
        (t(1), npz_bytes(frame=good)[:300], "corrupt"),  # truncated
        (t(2), npz_bytes(compressed=False, frame=obj), "pickled"),
        (t(3), npz_bytes(image=good), "missing_frame"),
        (t(4), npz_bytes(frame=np.zeros((100, 120), np.uint8)), "wrong_shape"),
        (t(5), npz_bytes(frame=np.where(good > 100, np.nan, good).astype(np.float32)), "nan"),
        (t(6), npz_bytes(frame=np.full(GRID, 300, np.int16)), "out_of_range"),
        (t(7), npz_bytes(frame=good.astype(np.int16)), "wrong_dtype"),
        (t(8), npz_bytes(frame=good, nodata=np.zeros(GRID, np.uint8)), "bad_nodata"),
        ("RDR_209901010000.npz", npz_bytes(frame=good), "future"),
        ("RDR_190001010000.npz", npz_bytes(frame=good), "before_earliest"),
        (t(9), zip_bytes({"frame.npy": npy_bytes(good) + bytes(1000)}), "oversized"),  # extra bytes in the member
        (t(10), npz_bytes(frame=good, extra=good), "unexpected_member"),
        (t(11), zip_bytes({"frame.npy": npy_bytes(good)}, zipfile.ZIP_BZIP2), "unsupported_compression"),
        (t(12), b"radar notes, not a scan\n", "not_npz"),  # a scan's name, a text's bytes: never an archive
    ]


def write_faults(folder: Path, tripwire_marker: Path | None = None) -> dict[str, tuple[str, bytes]]:
    """Write :func:`fault_files` into ``folder``; returns {name: (expected kind, bytes)}."""
    out = {}
    for name, data, kind in fault_files(tripwire_marker):
        write_file(folder, name, data)
        out[name] = (kind, data)
    return out


def event_files(shared_radar: Path, start: int = 0, n: int = 10) -> list[Path]:
    """``n`` consecutive scan files of the real event, from index ``start``."""
    files = sorted((shared_radar / EVENT).glob("RDR_*.npz"))
    assert len(files) >= start + n, f"{EVENT} has only {len(files)} scans"
    return files[start:start + n]


def deliver(files: list[Path], inbox: Path) -> list[datetime]:
    """Copy scan files into the inbox (as a producer would: temp name, then rename); their scan times."""
    inbox.mkdir(parents=True, exist_ok=True)
    times = []
    for f in files:
        tmp = inbox / f".{f.name}.part"
        shutil.copyfile(f, tmp)
        os.replace(tmp, inbox / f.name)
        t = time.time() - OLD_AGE_S
        os.utime(inbox / f.name, (t, t))
        times.append(scan_time_from_name(f.name))
    return times


def count_files(*folders: Path) -> int:
    """All plain files under ``folders`` (recursively)."""
    return sum(1 for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file())


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
