"""Property: whatever bytes a file holds, the reader returns a valid frame or raises its own
:class:`FrameError` with a precise reason, never anything else (Hypothesis).

Small example counts and a deadline keep the whole module well under 20 s.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import helpers_frames as hf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcast_core.io import FAULT_KINDS, FrameError, read_frame

NAME = "RDR_202007011200.npz"
SETTINGS = settings(max_examples=150, deadline=2000, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("property") / NAME


def assert_frame_or_own_error(path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        frame = read_frame(path)
    except FrameError as exc:
        assert exc.kind in FAULT_KINDS
        # precise reasons: nothing a file holds may fall through to the catch-all
        assert exc.kind != "unreadable", str(exc)
        assert str(exc).startswith(f"{exc.kind}: ")
        return
    assert frame.frame.dtype == np.uint8 and frame.frame.shape == hf.GRID
    assert frame.nodata.dtype == np.bool_ and frame.nodata.shape == hf.GRID


# --- arbitrary bytes -----------------------------------------------------------------------

@SETTINGS
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(scratch, data):
    assert_frame_or_own_error(scratch, data)


@SETTINGS
@given(tail=st.binary(max_size=4096))
def test_arbitrary_bytes_after_a_zip_signature(scratch, tail):
    assert_frame_or_own_error(scratch, b"PK\x03\x04" + tail)


# --- arbitrary zips ------------------------------------------------------------------------

DTYPES = ["|u1", "<u2", ">i2", "<i8", "<f2", "<f4", ">f8", "<c8", "|b1", "|O", "|S3", "<U2", "<M8[s]", "|V4"]


@st.composite
def npy_members(draw) -> bytes:
    """An .npy member: a true one, or a header claiming any shape and dtype with any payload."""
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(120, 120), (120, 119), (5,), ()]))
        dtype = draw(st.sampled_from(["u1", "i2", "f4", "f8", "?"]))
        fill = draw(st.sampled_from([0, 1, 255, 256, -1, float("nan"), float("inf")]))
        with np.errstate(invalid="ignore", over="ignore"):
            arr = np.full(shape, fill).astype(dtype)
        if draw(st.booleans()) and arr.ndim == 2:
            arr = np.asfortranarray(arr)
        return hf.npy_bytes(arr)
    shape = draw(st.one_of(st.just((120, 120)),
                           st.lists(st.integers(0, 2**40), max_size=4).map(tuple)))
    header = repr({"descr": draw(st.sampled_from(DTYPES)), "fortran_order": draw(st.booleans()), "shape": shape})
    header = header.encode() + b"\n"
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    length = struct.pack("<H" if version == (1, 0) else "<I", len(header))
    payload = draw(st.one_of(st.binary(max_size=64), st.integers(0, 2 * 14400).map(bytes)))
    return b"\x93NUMPY" + bytes(version) + length + header + payload


MEMBER_NAMES = st.sampled_from(["nodata.npy"] * 4 + ["frame.npy", "frame", "image.npy", "a/b.npy", "frame.npy/"])
METHODS = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED] * 3 + [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])


@st.composite
def zips(draw) -> bytes:
    buf = io.BytesIO()
    first = [("frame.npy", draw(npy_members()), draw(METHODS))] if draw(st.integers(0, 4)) else []
    others = st.tuples(MEMBER_NAMES, st.one_of(npy_members(), st.binary(max_size=256)), METHODS)
    members = first + draw(st.lists(others, max_size=2 if first else 1))
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: duplicates are wanted here
        for name, content, method in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=draw(st.booleans())) as fh:
                fh.write(content)
    data = bytearray(buf.getvalue())
    if data and draw(st.integers(0, 2)) == 0:  # damage a few bytes anywhere: headers, directory, data
        for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                             min_size=1, max_size=3)):
            data[position] = value
    return bytes(data)


@SETTINGS
@given(data=zips())
def test_arbitrary_zips(scratch, data):
    assert_frame_or_own_error(scratch, data)


@SETTINGS
@given(data=zips(), cut=st.integers(0, 4096))
def test_truncated_zips(scratch, data, cut):
    assert_frame_or_own_error(scratch, data[:cut])
