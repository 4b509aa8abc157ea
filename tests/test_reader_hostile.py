"""The reader cannot be hurt: a hostile file costs bounded memory and gets a precise reason.

Everything here is built byte by byte (zip directories, .npy headers) to say what it claims,
not what numpy would write.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
import zipfile
import zlib
from datetime import UTC, datetime, timedelta

import helpers_frames as hf
import numpy as np
import pytest

from nowcast_core.io import FrameError, frame_file_name, read_frame
from nowcast_core.io.safe_npz import (
    MAX_FILE_BYTES,
    MAX_MEMBER_BYTES,
    MAX_NPY_HEADER_BYTES,
)

T0 = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)
NAME = frame_file_name(T0)
#: Memory a rejected hostile file may cost the reader, whatever it claims (its own bytes are < 1 MB).
MEMORY_BOUND_BYTES = 8 * 2**20


def npy_header(shape: tuple, descr: str | list = "|u1", fortran: bool = False, version: tuple = (1, 0)) -> bytes:
    """An .npy header (magic, version, length, dict) claiming ``shape`` and ``descr``, padded as numpy pads."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(length_format)
    pad = -(prefix + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text)) + text


def kind_and_peak(tmp_path, data: bytes, **kwargs) -> tuple[str, int]:
    path = hf.write_file(tmp_path, NAME, data)
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as info:
            read_frame(path, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f"{info.value.kind}: ") and info.value.detail
    return info.value.kind, peak


def set_central_directory_field(data: bytes, name: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of ``name``'s central directory record (offset from the record's start)."""
    i = data.index(b"PK\x01\x02")
    while True:
        name_len = struct.unpack_from("<H", data, i + 28)[0]
        if data[i + 46:i + 46 + name_len] == name:
            break
        i = data.index(b"PK\x01\x02", i + 4)
    out = bytearray(data)
    struct.pack_into(fmt, out, i + offset, value)
    return bytes(out)


# --- what the directory and headers claim ----------------------------------------------------


@pytest.mark.parametrize("shape", [(100_000, 100_000), (2**31, 2**31), (120, 120, 10**6)])
def test_enormous_declared_shape_is_refused_before_any_allocation(tmp_path, shape):
    data = hf.zip_bytes({"frame.npy": npy_header(shape) + bytes(64)}, zipfile.ZIP_STORED)
    kind, peak = kind_and_peak(tmp_path, data)
    assert kind == "wrong_shape" and peak < MEMORY_BOUND_BYTES


def test_zip_bomb_is_refused_from_the_directory(tmp_path):
    """A 200 MB member compressed to ~200 kB: its declared size is refused, nothing is inflated."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    header = npy_header((120, 120))
    stream = z.compress(header) + b"".join(z.compress(bytes(2**20)) for _ in range(200)) + z.flush()
    bomb = _deflated_member_zip("frame.npy", stream, len(header) + 200 * 2**20,
                                zlib.crc32(header + bytes(200 * 2**20)))
    assert len(bomb) < MAX_FILE_BYTES
    kind, peak = kind_and_peak(tmp_path, bomb)
    assert kind == "oversized" and peak < MEMORY_BOUND_BYTES


def test_member_that_lies_about_its_size_is_refused(tmp_path):
    """Declares the 14,528 bytes of a frame but carries a deflate stream of 100 MB: refused unread."""
    good = hf.npy_bytes(hf.good_frame())
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = z.compress(good) + b"".join(z.compress(bytes(2**20)) for _ in range(100)) + z.flush()
    data = _deflated_member_zip("frame.npy", stream, len(good), zlib.crc32(good))
    kind, peak = kind_and_peak(tmp_path, data)
    assert kind == "oversized" and peak < MEMORY_BOUND_BYTES


def _deflated_member_zip(name: str, stream: bytes, file_size: int, crc: int) -> bytes:
    """A one-member zip whose member is ``stream`` (raw deflate), declaring ``file_size`` and ``crc``."""
    n = name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), file_size & 0xFFFFFFFF,
                        len(n), 0) + n
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream),
                          file_size & 0xFFFFFFFF, len(n), 0, 0, 0, 0, 0, 0) + n
    body = local + stream
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(body), 0)
    return body + central + end


def test_member_with_extra_bytes_beyond_its_header_is_oversized(tmp_path):
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        data = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame()) + b"\0" * 3}, compression)
        assert kind_and_peak(tmp_path, data)[0] == "oversized"
    data = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame()),
                         "nodata.npy": hf.npy_bytes(np.zeros(hf.GRID, bool)) + bytes(10**5)})
    assert kind_and_peak(tmp_path, data)[0] == "oversized"


def test_member_shorter_than_its_header_says_is_corrupt(tmp_path):
    data = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame())[:-100]})
    assert kind_and_peak(tmp_path, data)[0] == "corrupt"


def test_file_larger_than_any_scan_is_refused_unread(tmp_path):
    data = b"PK\x03\x04" + bytes(MAX_FILE_BYTES)
    kind, peak = kind_and_peak(tmp_path, data)
    assert kind == "oversized" and peak < 2**20  # not even read into memory


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_compression_methods_numpy_never_writes_are_refused(tmp_path, compression):
    data = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame())}, compression)
    assert kind_and_peak(tmp_path, data)[0] == "unsupported_compression"


def test_unknown_compression_method_and_encryption_are_refused(tmp_path):
    good = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame())}, zipfile.ZIP_STORED)
    unknown = set_central_directory_field(good, b"frame.npy", 10, "<H", 99)  # compression method
    assert kind_and_peak(tmp_path, unknown)[0] == "unsupported_compression"
    encrypted = set_central_directory_field(good, b"frame.npy", 8, "<H", 0x1)  # general purpose flags
    assert kind_and_peak(tmp_path, encrypted)[0] == "unsupported_compression"


@pytest.mark.parametrize("members", [
    {"frame.npy": None, "extra.npy": None},
    {"frame.npy": None, "frame": None},
    {"frame.npy": None, "../../etc/passwd": None},
    {"frame.npy": None, "nodata.npy": "nodata", "third.txt": None},
], ids=["extra-array", "frame-without-suffix", "path", "three"])
def test_unexpected_members_are_refused(tmp_path, members):
    arrays = {"frame.npy": hf.npy_bytes(hf.good_frame()), "nodata.npy": hf.npy_bytes(np.zeros(hf.GRID, bool))}
    data = hf.zip_bytes({name: arrays.get(name, b"x") for name in members})
    assert kind_and_peak(tmp_path, data)[0] == "unexpected_member"


def test_member_name_twice_is_refused(tmp_path):
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("frame.npy", hf.npy_bytes(hf.good_frame()))
        zf.writestr("frame.npy", hf.npy_bytes(hf.good_frame(1)))
    assert kind_and_peak(tmp_path, buf.getvalue())[0] == "unexpected_member"


def test_overlong_npy_header_is_corrupt(tmp_path):
    header = npy_header((120, 120), version=(2, 0))
    padded = header[:-1] + b" " * (MAX_NPY_HEADER_BYTES + 10) + b"\n"
    padded = padded[:8] + struct.pack("<I", len(padded) - 12) + padded[12:]
    data = hf.zip_bytes({"frame.npy": padded + hf.good_frame().tobytes()})
    assert kind_and_peak(tmp_path, data)[0] == "corrupt"


def test_structured_dtype_with_objects_is_pickled_and_not_loaded(tmp_path):
    data = hf.zip_bytes({"frame.npy": npy_header((120, 120), descr=[("a", "|O")]) + bytes(64)})
    assert kind_and_peak(tmp_path, data)[0] == "pickled"


def test_nodata_with_bytes_other_than_0_and_1_is_bad_nodata(tmp_path):
    raw = np.full(hf.GRID, 7, np.uint8)
    data = hf.zip_bytes({"frame.npy": hf.npy_bytes(hf.good_frame()), "nodata.npy": npy_header((120, 120), "|b1")
                         + raw.tobytes()})
    assert kind_and_peak(tmp_path, data)[0] == "bad_nodata"


@pytest.mark.parametrize("name", ["RDR_202007011200.npz\n", "RDR_202007011200.npz.bak", "RDR_202007011200.npz~",
                                  " RDR_202007011200.npz", "RDR_２０２００７０１１２００.npz", "RDR_202007011200.npzRDR"])
def test_near_miss_names_are_bad_names(tmp_path, name):
    path = hf.write_file(tmp_path, name, hf.npz_bytes(frame=hf.good_frame()))
    with pytest.raises(FrameError) as info:
        read_frame(path)
    assert info.value.kind == "bad_name"


# --- what stays accepted ---------------------------------------------------------------------


def test_fortran_ordered_frame_reads_in_its_true_orientation(tmp_path):
    frame = hf.good_frame(4)
    frame[0, :] = 255  # north row: orientation is visible
    member = hf.npy_bytes(np.asfortranarray(frame))
    assert b"'fortran_order': True" in member[:128]
    data = hf.zip_bytes({"frame.npy": member})
    got = read_frame(hf.write_file(tmp_path, NAME, data))
    np.testing.assert_array_equal(got.frame, frame)
    assert got.frame.flags.c_contiguous


def test_npy_format_2_header_reads(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, hf.good_frame(5), version=(2, 0))
    got = read_frame(hf.write_file(tmp_path, NAME, hf.zip_bytes({"frame.npy": buf.getvalue()})))
    np.testing.assert_array_equal(got.frame, hf.good_frame(5))


def test_largest_legitimate_file_is_within_the_bounds():
    """The bounds leave room for the biggest file the contract allows (uncompressed frame and mask)."""
    data = hf.npz_bytes(compressed=False, frame=hf.good_frame(), nodata=np.ones(hf.GRID, bool))
    assert len(data) < MAX_FILE_BYTES
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert max(i.file_size for i in zf.infolist()) < MAX_MEMBER_BYTES


# --- time and links --------------------------------------------------------------------------


def test_scan_before_the_earliest_date_is_refused(tmp_path):
    old = hf.write_scan(tmp_path, datetime(1900, 1, 1, tzinfo=UTC), hf.good_frame())
    with pytest.raises(FrameError) as info:
        read_frame(old, earliest=hf.EARLIEST)
    assert info.value.kind == "before_earliest" and "1900-01-01T00:00Z" in str(info.value)
    edge = hf.write_scan(tmp_path, hf.EARLIEST, hf.good_frame())
    assert read_frame(edge, earliest=hf.EARLIEST).scan_time == hf.EARLIEST
    just_before = hf.write_scan(tmp_path, hf.EARLIEST - timedelta(minutes=10), hf.good_frame())
    with pytest.raises(FrameError, match="before_earliest"):
        read_frame(just_before, earliest=hf.EARLIEST)


def test_links_are_refused_without_following_when_asked(tmp_path):
    target = hf.write_scan(tmp_path / "elsewhere", T0, hf.good_frame())
    os.chmod(target, 0o600)
    before = (hashlib.sha256(target.read_bytes()).hexdigest(), os.stat(target).st_mode, os.stat(target).st_mtime_ns)
    link = tmp_path / "inbox" / NAME
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(FrameError) as info:
        read_frame(link, follow_symlinks=False)
    assert info.value.kind == "symlink"
    after = (hashlib.sha256(target.read_bytes()).hexdigest(), os.stat(target).st_mode, os.stat(target).st_mtime_ns)
    assert after == before
    # a folder of links (evaluation, training) is still read through them by default
    assert read_frame(link).scan_time == T0


def test_fifo_is_not_waited_on(tmp_path):
    fifo = tmp_path / NAME
    os.mkfifo(fifo)
    with pytest.raises(FrameError) as info:
        read_frame(fifo, follow_symlinks=False)
    assert info.value.kind == "not_regular"
