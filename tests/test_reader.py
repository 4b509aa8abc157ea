"""The strict scan-file reader: every fault the inbox really sees has its own reason.

Spec: /work/shared/spec/radar-frames.md, "What really arrives".
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import helpers_frames as hf
import numpy as np
import pytest

from nowcast_core.io import (
    FAULT_KINDS,
    FrameError,
    NotReadyError,
    frame_file_name,
    read_folder,
    read_frame,
    scan_time_from_name,
)

T0 = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)
NAME = frame_file_name(T0)


def _kind(path: Path, **kwargs) -> str:
    with pytest.raises(FrameError) as info:
        read_frame(path, **kwargs)
    assert info.value.kind in FAULT_KINDS
    assert str(info.value).startswith(f"{info.value.kind}: ") and info.value.detail
    return info.value.kind


# --- good files -------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False], ids=["savez_compressed", "savez"])
@pytest.mark.parametrize("with_nodata", [False, True], ids=["no-nodata", "nodata"])
def test_good_file_reads_back_exactly(tmp_path, compressed, with_nodata):
    frame = hf.good_frame(3)
    nodata = np.zeros(hf.GRID, bool)
    nodata[:, :10] = True
    path = hf.write_scan(tmp_path, T0, frame, nodata if with_nodata else None, compressed=compressed)
    got = read_frame(path, now=T0, settle_seconds=2.0)
    assert got.scan_time == T0 and got.scan_time.tzinfo is not None
    assert got.frame.dtype == np.uint8 and got.frame.shape == (120, 120)
    np.testing.assert_array_equal(got.frame, frame)
    assert got.nodata.dtype == np.bool_ and got.nodata.shape == (120, 120)
    np.testing.assert_array_equal(got.nodata, nodata if with_nodata else np.zeros(hf.GRID, bool))
    assert got.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_real_radar_scans_read(shared_radar):
    files = hf.event_files(shared_radar, 0, 5)
    frames = [read_frame(f) for f in files]
    assert [f.scan_time for f in frames] == [hf.EVENT_START + hf.minutes(k) for k in range(5)]
    assert all(f.frame.dtype == np.uint8 and f.frame.shape == (120, 120) for f in frames)
    assert any(f.frame.max() > 0 for f in frames)


def test_read_folder_skips_bad_files_and_sorts(tmp_path):
    for k in (2, 0, 1):
        hf.write_scan(tmp_path, T0 + hf.minutes(k), hf.good_frame(k))
    hf.write_file(tmp_path, frame_file_name(T0 + hf.minutes(3)), b"")
    hf.write_file(tmp_path, frame_file_name(T0 + hf.minutes(4)), hf.npz_bytes(frame=np.zeros((5, 5), np.uint8)))
    assert [f.scan_time for f in read_folder(tmp_path)] == [T0 + hf.minutes(k) for k in range(3)]


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "notes.txt",
    "RDR_202001011005.npz",   # minutes not a multiple of 10
    "RDR_202001011001.npz",
    "RDR_202002301000.npz",   # 30 February
    "RDR_202013011000.npz",   # month 13
    "RDR_202001012400.npz",   # hour 24
    "RDR_20200101100.npz",    # 11 digits
    "RDR_2020010110000.npz",  # 13 digits
    "rdr_202001011000.npz",
    "RDR_202001011000.npy",
    "RDR_202001011000.npz.part",
    "RDR_202001011000.NPZ",
    "RDR_٢٠٢٠٠١٠١١٠٠٠.npz",   # non-ASCII digits
])
def test_names_that_are_not_frames(tmp_path, name):
    path = hf.write_file(tmp_path, name, hf.npz_bytes(frame=hf.good_frame()))
    assert _kind(path) == "bad_name"
    with pytest.raises(FrameError) as info:
        scan_time_from_name(name)
    assert info.value.kind == "bad_name"


def test_name_round_trip():
    assert frame_file_name(T0) == "RDR_202007011200.npz"
    assert scan_time_from_name("RDR_202007011200.npz") == T0
    # an aware non-UTC time names the same scan
    assert frame_file_name(T0.astimezone(ZoneInfo("Asia/Seoul"))) == NAME


# --- partial and zero-byte files ---------------------------------------------------------


def test_old_zero_byte_file_is_empty(tmp_path):
    path = hf.write_file(tmp_path, NAME, b"")
    assert _kind(path, settle_seconds=2.0) == "empty"
    assert _kind(path) == "empty"


def test_file_modified_a_moment_ago_waits(tmp_path):
    for data in (b"", hf.npz_bytes(frame=hf.good_frame())[:200], hf.npz_bytes(frame=hf.good_frame())):
        path = hf.write_file(tmp_path, NAME, data, age_s=0)
        with pytest.raises(NotReadyError):
            read_frame(path, settle_seconds=30.0)
    # once it has settled, it is judged
    t = time.time() - 60
    os.utime(path, (t, t))
    assert read_frame(path, settle_seconds=30.0).scan_time == T0


def test_partial_file_that_settled_is_corrupt(tmp_path):
    data = hf.npz_bytes(frame=hf.good_frame())
    for cut in (len(data) // 2, len(data) - 1, 30):
        path = hf.write_file(tmp_path, NAME, data[:cut])
        assert _kind(path, settle_seconds=2.0) == "corrupt", cut


# --- corrupt archives ------------------------------------------------------------------


def test_damaged_uncompressed_archive_is_corrupt(tmp_path):
    data = bytearray(hf.npz_bytes(compressed=False, frame=hf.good_frame()))
    i = len(data) // 2
    data[i:i + 20] = b"\x07" * 20  # CRC mismatch
    assert _kind(hf.write_file(tmp_path, NAME, bytes(data))) == "corrupt"


def test_damaged_compressed_archive_is_corrupt(tmp_path):
    """A bad deflate stream raises zlib.error inside numpy: it must still be a FrameError."""
    assert _kind(hf.write_file(tmp_path, NAME, hf.damaged_compressed_archive())) == "corrupt"


def test_bare_npy_named_npz_is_not_an_npz(tmp_path):
    """np.load returns a plain ndarray for .npy bytes; the reader must say so, not crash."""
    assert _kind(hf.write_file(tmp_path, NAME, hf.npy_bytes(hf.good_frame()))) == "not_npz"


@pytest.mark.parametrize(("data", "kind"), [(b"this is not an archive at all\n" * 4, "not_npz"), (b"PK", "corrupt"),
                                            (b"\x00\x01\x02", "not_npz"), (b"PK\x03", "corrupt")],
                         ids=["text", "2-byte-partial-zip", "3-bytes", "3-byte-partial-zip"])
def test_garbage_bytes_are_not_pickled_and_only_a_zip_prefix_may_be_arriving(tmp_path, data, kind):
    """Bytes that are no archive at all hold no object arrays: not 'pickled'. Only the start of a zip
    ('corrupt') may still be arriving; anything else is 'not_npz', never waited for."""
    assert _kind(hf.write_file(tmp_path, NAME, data)) == kind


# --- contents --------------------------------------------------------------------------


def test_object_array_is_pickled_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = hf.Tripwire(marker), None
    for arrays in ({"frame": obj}, {"frame": hf.good_frame(), "nodata": obj}):
        path = hf.write_file(tmp_path, NAME, hf.npz_bytes(compressed=False, **arrays))
        assert _kind(path) == "pickled"
    assert not marker.exists(), "the reader unpickled the file's objects"
    # the tripwire works: loading with pickle allowed does trip it
    with np.load(path, allow_pickle=True) as npz:
        npz["nodata"]
    assert marker.exists()


def test_missing_frame(tmp_path):
    path = hf.write_file(tmp_path, NAME, hf.npz_bytes(image=hf.good_frame(), nodata=np.zeros(hf.GRID, bool)))
    assert _kind(path) == "missing_frame"


@pytest.mark.parametrize("shape", [(100, 120), (120, 121), (120, 120, 1), (1, 120, 120), (14400,), ()])
def test_wrong_shape(tmp_path, shape):
    path = hf.write_file(tmp_path, NAME, hf.npz_bytes(frame=np.zeros(shape, np.uint8)))
    assert _kind(path) == "wrong_shape"


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int64, np.float32, np.float64, bool, np.complex64])
def test_wrong_dtype_with_values_in_range(tmp_path, dtype):
    frame = hf.good_frame().astype(dtype)
    assert _kind(hf.write_file(tmp_path, NAME, hf.npz_bytes(frame=frame))) == "wrong_dtype"


@pytest.mark.parametrize("dtype,value", [(np.int16, 300), (np.int16, -1), (np.uint16, 256), (np.float32, 255.5),
                                         (np.float64, -0.5), (np.float32, np.inf)])
def test_out_of_range(tmp_path, dtype, value):
    frame = hf.good_frame().astype(dtype)
    frame[5, 5] = value
    assert _kind(hf.write_file(tmp_path, NAME, hf.npz_bytes(frame=frame))) == "out_of_range"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_with_nan(tmp_path, dtype):
    frame = hf.good_frame().astype(dtype)
    frame[7, 8] = np.nan
    assert _kind(hf.write_file(tmp_path, NAME, hf.npz_bytes(frame=frame))) == "nan"


@pytest.mark.parametrize("nodata", [np.zeros(hf.GRID, np.uint8), np.zeros((120, 119), bool),
                                    np.zeros(hf.GRID, np.float32), np.array(True)],
                         ids=["uint8", "shape", "float", "scalar"])
def test_bad_nodata(tmp_path, nodata):
    path = hf.write_file(tmp_path, NAME, hf.npz_bytes(frame=hf.good_frame(), nodata=nodata))
    assert _kind(path) == "bad_nodata"


# --- time ------------------------------------------------------------------------------


def test_future_scan_time(tmp_path):
    path = hf.write_scan(tmp_path, T0, hf.good_frame())
    assert _kind(path, now=T0 - timedelta(minutes=20)) == "future"
    assert _kind(path, now=T0 - timedelta(minutes=11), future_tolerance=timedelta(minutes=10)) == "future"
    # within the tolerance, and with the check off, it is a good scan
    assert read_frame(path, now=T0 - timedelta(minutes=15)).scan_time == T0
    assert read_frame(path, now=None).scan_time == T0
    far = hf.write_scan(tmp_path, datetime(2099, 1, 1, tzinfo=UTC), hf.good_frame())
    assert _kind(far, now=datetime.now(UTC)) == "future"


def test_every_fault_file_of_the_helper_gets_its_own_kind(tmp_path):
    """The helper's fault set (used by the ingest and cycle tests) covers every file-level kind."""
    expected = hf.write_faults(tmp_path / "in")
    kinds = {name: _kind(tmp_path / "in" / name, now=datetime.now(UTC), earliest=hf.EARLIEST) for name in expected}
    assert kinds == {name: kind for name, (kind, _) in expected.items()}
    not_file_contents = {"conflicting_duplicate", "symlink", "not_regular", "unreadable"}
    assert set(kinds.values()) == set(FAULT_KINDS) - not_file_contents
