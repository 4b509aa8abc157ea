"""Parse a scan's ``.npz`` bytes without trusting them.

Everything is checked from the zip directory and the ``.npy`` headers before any array
data is decompressed: member names, compression method, declared sizes, shape, dtype and
byte order. Decompression reads at most the bytes the header describes, so one file costs
at most :data:`MAX_FILE_BYTES` + :data:`MAX_MEMBER_BYTES` of memory whatever it claims.
Never unpickles. Every failure is a :class:`FrameError` with its own reason.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from nowcast_core.contract import GRID_SHAPE
from nowcast_core.io.errors import FrameError

GRID_PIXELS = GRID_SHAPE[0] * GRID_SHAPE[1]
#: numpy writes headers of 128 bytes; a longer one is no file of the feed.
MAX_NPY_HEADER_BYTES = 4096
_NPY_PREFIX_BYTES = 8 + 4 + MAX_NPY_HEADER_BYTES  # magic and version, header length, header
#: Widest numeric dtype still read to say *why* a frame is wrong (NaN, out of range) rather than only "wrong dtype".
MAX_ITEM_BYTES = 16
MAX_MEMBER_BYTES = MAX_NPY_HEADER_BYTES + GRID_PIXELS * MAX_ITEM_BYTES
#: Two members at most, plus zip headers and directory.
MAX_FILE_BYTES = 2 * MAX_MEMBER_BYTES + 64 * 1024
MEMBERS = ("frame.npy", "nodata.npy")
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_MAX_NAMES_SHOWN = 5


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names(names: list[str]) -> str:
    shown = ", ".join(ascii(n) for n in names[:_MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else "")


def _check_not_zip(data: bytes, label: str) -> None:
    """A file whose first four bytes are there and are not a zip's will never be an archive: it is not
    waited for (``not_npz``), unlike a prefix of one (``corrupt``), which may still be arriving."""
    if data.startswith(b"PK\x03\x04"):
        return
    if data.startswith(b"\x93NUMPY"):
        raise FrameError("not_npz", f"{label} is a bare .npy array, not an .npz archive")
    if data.startswith(b"\x80"):
        raise FrameError("pickled", f"{label} is a pickle, not an .npz archive")
    if len(data) < 4 and b"PK\x03\x04".startswith(data):
        raise FrameError("corrupt", f"{label} is too short for a zip (.npz) archive")
    raise FrameError("not_npz", f"{label} is not a zip (.npz) archive (it starts with {ascii(data[:8])})")


def check_directory(infos: list[zipfile.ZipInfo], label: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, after checking names, methods and declared sizes."""
    names = [i.filename for i in infos]
    if "frame.npy" not in names:
        raise FrameError("missing_frame", f"{label} holds {_names(names) or 'nothing'}, no 'frame'")
    unexpected = [n for n in names if n not in MEMBERS]
    if unexpected:
        raise FrameError("unexpected_member", f"{label} also holds {_names(unexpected)}; only {' and '.join(MEMBERS)}")
    if len(set(names)) != len(names):
        raise FrameError("unexpected_member", f"{label} holds a member name twice: {_names(names)}")
    for info in infos:
        if info.flag_bits & 0x1:
            raise FrameError("unsupported_compression", f"{label}: member {info.filename!r} is encrypted")
        if info.compress_type not in _READABLE_METHODS:
            raise FrameError("unsupported_compression", f"{label}: member {info.filename!r} uses compression method "
                             f"{info.compress_type}; only stored (0) and deflate (8) are read")
        if info.file_size > MAX_MEMBER_BYTES:
            raise FrameError("oversized", f"{label}: member {info.filename!r} declares {info.file_size} bytes "
                             f"uncompressed; a frame needs at most {MAX_MEMBER_BYTES}")
        if info.compress_size > _most_compressed_bytes(info):
            raise FrameError("oversized", f"{label}: member {info.filename!r} holds {info.compress_size} compressed "
                             f"bytes for {info.file_size} bytes of content")
    return {i.filename: i for i in infos}


def _most_compressed_bytes(info: zipfile.ZipInfo) -> int:
    """The most bytes a member's stored data may take: its size, or zlib's deflateBound of it."""
    n = info.file_size
    if info.compress_type == zipfile.ZIP_STORED:
        return n
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def _read_header(head: bytes, label: str, name: str) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, header length in bytes) of a member's first bytes."""
    fp = io.BytesIO(head)
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER_BYTES)
        else:
            raise FrameError("corrupt", f"{label}: member {name!r} is .npy format {version}, only 1.0 and 2.0 are read")
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - any header numpy cannot read is the file's fault
        raise FrameError("corrupt", f"{label}: member {name!r} has no readable .npy header ({_short(exc)})") from None
    return tuple(shape), bool(fortran_order), dtype, fp.tell()


def _check_header(key: str, shape: tuple, dtype: np.dtype, label: str) -> None:
    """Raise for a header the contract refuses before any data is decompressed."""
    if dtype.hasobject:
        raise FrameError("pickled", f"{label}: '{key}' is an object array")
    if key == "nodata":
        if shape != GRID_SHAPE or dtype != np.bool_:
            raise FrameError("bad_nodata", f"{label}: 'nodata' is {dtype} {shape}, expected bool {GRID_SHAPE}")
        return
    if shape != GRID_SHAPE:
        raise FrameError("wrong_shape", f"{label}: 'frame' has shape {shape}, expected {GRID_SHAPE}")
    if dtype == np.uint8 or (dtype.kind in "fiu" and dtype.itemsize <= MAX_ITEM_BYTES):
        return  # a numeric frame of another dtype is read to say whether it is NaN, out of range or only that
    raise FrameError("wrong_dtype", f"{label}: 'frame' is {dtype}, expected uint8")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, label: str) -> np.ndarray:
    name = info.filename
    try:
        with zf.open(info) as member:
            head = member.read(_NPY_PREFIX_BYTES)
            shape, fortran_order, dtype, header_bytes = _read_header(head, label, name)
            _check_header(key, shape, dtype, label)
            n_data = GRID_PIXELS * dtype.itemsize
            if info.file_size > header_bytes + n_data:
                raise FrameError("oversized", f"{label}: member {name!r} holds {info.file_size} bytes, "
                                 f"its header describes {header_bytes + n_data}")
            if info.file_size < header_bytes + n_data:
                raise FrameError("corrupt", f"{label}: member {name!r} holds {info.file_size} bytes, "
                                 f"fewer than the {header_bytes + n_data} its header describes")
            raw = head[header_bytes:] + member.read(header_bytes + n_data - len(head))
            if len(raw) != n_data or member.read(1):  # the second read reaches the end: the CRC is checked
                raise FrameError("corrupt", f"{label}: member {name!r} ends after {len(raw)} of {n_data} data bytes")
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib.error, BadZipFile (CRC), EOFError, NotImplementedError, ...
        raise FrameError("corrupt", f"{label}: member {name!r} cannot be decompressed ({_short(exc)})") from None
    if key == "nodata":
        values = np.frombuffer(raw, np.uint8)
        if values.max() > 1:
            raise FrameError("bad_nodata", f"{label}: 'nodata' holds bytes other than 0 and 1")
        values = values.view(np.bool_)
    else:
        values = np.frombuffer(raw, dtype)
    return np.array(values.reshape(GRID_SHAPE, order="F" if fortran_order else "C"), order="C")


def _validate_frame(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise FrameError("nan", f"{label}: 'frame' is {arr.dtype} with {int(np.isnan(arr).sum())} NaN values")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if lo < 0 or hi > 255:
        raise FrameError("out_of_range", f"{label}: 'frame' values span {lo:g}..{hi:g}, expected 0..255")
    raise FrameError("wrong_dtype", f"{label}: 'frame' is {arr.dtype}, expected uint8")


def parse_scan_npz(data: bytes, label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(frame, nodata)`` of an archive's bytes: uint8 and bool, both 120 x 120, C order.

    Raises :class:`FrameError` for anything else, whatever the bytes are.
    """
    if not data:
        raise FrameError("empty", f"{label} has zero bytes")
    if len(data) > MAX_FILE_BYTES:
        raise FrameError("oversized", f"{label} has {len(data)} bytes; a scan file needs at most {MAX_FILE_BYTES}")
    _check_not_zip(data, label)
    try:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - BadZipFile, struct.error, ValueError, ... on a damaged directory
            raise FrameError("corrupt", f"{label}: the zip directory is unreadable ({_short(exc)})") from None
        with zf:
            members = check_directory(zf.infolist(), label)
            frame = _validate_frame(_read_member(zf, members["frame.npy"], "frame", label), label)
            if "nodata.npy" in members:
                nodata = _read_member(zf, members["nodata.npy"], "nodata", label)
            else:
                nodata = np.zeros(GRID_SHAPE, dtype=bool)
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - the catch-all: no input may raise anything but FrameError
        raise FrameError("unreadable", f"{label}: {_short(exc)}") from None
    return frame, nodata
