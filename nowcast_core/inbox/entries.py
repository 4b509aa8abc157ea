"""What is in the inbox, without following or opening anything.

Each entry is classified from ``lstat`` alone:

- ``file``: a regular file, to be judged by the reader;
- ``temporary``: a producer's regular file still being written under a temporary name
  (hidden ``.name``, ``*.part``, ``*.tmp``): left alone until it is renamed;
- ``symlink``: a symbolic link, never followed: rejected with its target in the reason;
- ``unexpected``: a directory, fifo, socket or device: never opened, left where it is,
  reported by ``nowcast status`` and logged once.

A name that cannot be stored or shown safely (not valid UTF-8, control characters, longer
than :data:`MAX_NAME_BYTES`) gets a generated safe name for its quarantined copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".part", ".tmp")
#: Longest name kept as is: leaves room under NAME_MAX (255 bytes) for ``.k`` suffixes.
MAX_NAME_BYTES = 200
_MAX_SHOWN_CHARS = 120
_logged_unexpected: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str  # "file" | "temporary" | "symlink" | "unexpected"
    st: os.stat_result
    what: str = ""  # for "unexpected": "directory", "fifo", ...

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def shown(self) -> str:
        return shown_name(self.name)


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` cannot be kept as it is (None if it can)."""
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        return "made with control or unassigned characters"
    if len(raw) > MAX_NAME_BYTES:
        return f"{len(raw)} bytes long (more than {MAX_NAME_BYTES})"
    return None


def safe_name(name: str) -> str:
    """A generated name for a file whose own name is unsafe: stable, ASCII, short."""
    return f"unsafe-name-{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}"


def shown_name(name: str) -> str:
    """``name`` as it may be logged, stored and printed: itself if safe, else its escaped bytes, shortened."""
    if unsafe_name_reason(name) is None:
        return name
    text = ascii(os.fsencode(name))
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS - 3] + "..."


def _what(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "unknown file type"


def scan_inbox(inbox: Path) -> list[Entry]:
    """Every entry of the inbox, sorted by name (so scans come oldest first), classified by ``lstat``."""
    entries = []
    for name in sorted(os.listdir(inbox)):
        path = Path(inbox) / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # renamed or removed since the listing
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(path, "symlink", st))
        elif not stat.S_ISREG(st.st_mode):
            entries.append(Entry(path, "unexpected", st, _what(st.st_mode)))
        elif is_temporary(name):
            entries.append(Entry(path, "temporary", st))
        else:
            entries.append(Entry(path, "file", st))
    return entries


def log_unexpected_once(entry: Entry) -> None:
    """Warn about an unexpected inbox entry the first time this process sees it."""
    key = (str(entry.path.parent), f"{entry.name}\0{entry.what}")
    if key in _logged_unexpected:
        return
    _logged_unexpected.add(key)
    log.warning("inbox holds %s, a %s: left there and not read (see `nowcast status`)", entry.shown, entry.what)
