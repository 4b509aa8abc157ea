"""The reader's error types and reason codes (one code per way a file breaks the contract)."""

from __future__ import annotations

#: Reason codes, one per fault kind. ``rejected_files.reason_kind`` holds one of these (<= 32 characters).
FAULT_KINDS = {
    "bad_name": "the name is not RDR_YYYYMMDDHHMM.npz with minutes a multiple of 10",
    "empty": "zero-byte file",
    "corrupt": "not a readable .npz archive (truncated or damaged)",
    "not_npz": "not an .npz archive at all: its first bytes are not a zip archive's (text, a bare .npy, ...)",
    "oversized": "the file or an archive member holds more bytes than the contract needs",
    "unexpected_member": "the archive holds something other than frame.npy and nodata.npy",
    "unsupported_compression": "a member is compressed with a method other than stored or deflate, or encrypted",
    "pickled": "holds object arrays that would need pickle to load",
    "missing_frame": "no 'frame' array in the archive",
    "wrong_shape": "array shape is not 120 x 120",
    "nan": "float array containing NaN",
    "out_of_range": "pixel values outside 0..255",
    "wrong_dtype": "array dtype is not the contract's",
    "bad_nodata": "'nodata' is not a 120 x 120 bool array",
    "future": "scan time is in the future",
    "before_earliest": "scan time is before the earliest accepted date",
    "symlink": "a symbolic link (never followed)",
    "not_regular": "not a regular file (directory, fifo, socket, device)",
    "unreadable": "reading failed in a way no other reason covers",
    "conflicting_duplicate": "a different file for a scan already registered",
}

#: Kinds a file can show while it is still being written (a prefix of a good archive).
MAYBE_INCOMPLETE_KINDS = frozenset({"empty", "corrupt"})


class FrameError(ValueError):
    """A scan file that breaks the contract. ``kind`` is one of :data:`FAULT_KINDS`."""

    def __init__(self, kind: str, detail: str):
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


class NotReadyError(RuntimeError):
    """The file may still be being written; look again at the next poll."""
