"""Durable, verified file writes (the one write helper of the system): nothing in the inbox is
removed before its copy is safe, and no forecast field or model is ever half written.

A copy is written under a short temporary name (``O_EXCL``, never through a link), flushed
(``fsync``), renamed into place, its folder flushed, and read back: its SHA-256 must be the
one of the bytes meant. Only then may the caller remove the original, and only if the
original is still the file that was copied (same inode, size and modification time).

:func:`disk_space` says how much room the file systems holding the state folders have left.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

_CHUNK_BYTES = 1 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def private_dir(folder: Path, root: Path | None = None) -> Path:
    """Create ``folder`` (and its parents) readable by the owner only (0o700), from ``root`` down."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = folder
    while True:
        os.chmod(p, 0o700)
        if root is None or p == root or p.parent == p or not p.is_relative_to(root):
            break
        p = p.parent
    return folder


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path, *, follow_links: bool = True) -> str:
    """SHA-256 of a regular file's bytes; with ``follow_links=False`` never through a link (the inbox)."""
    h = hashlib.sha256()
    fd = os.open(path, _READ_FLAGS if not follow_links else os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        while chunk := os.read(fd, _CHUNK_BYTES):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _temporary_beside(dest: Path) -> Path:
    return dest.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"  # short: dest's name may be near NAME_MAX


def _install(tmp: Path, dest: Path, expected_sha256: str) -> None:
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    got = file_sha256(dest, follow_links=False)
    if got != expected_sha256:
        dest.unlink(missing_ok=True)  # a copy that does not verify is no copy
        raise OSError(errno.EIO, f"the copy at {dest} reads back with checksum {got[:12]}, "
                                 f"not {expected_sha256[:12]}", str(dest))


def _write_temporary(tmp: Path, chunks, mode: int | None) -> None:
    """Create ``tmp`` (never through a link), write every chunk whole, set ``mode``, fsync."""
    fd = os.open(tmp, _WRITE_FLAGS, 0o600 if mode is not None else 0o666)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_verified(data: bytes, dest: Path, *, mode: int | None = None) -> str:
    """Write ``data`` to ``dest`` durably and check it reads back; its SHA-256.

    ``mode``: exact permissions of the file (default: 0o666 less the umask).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(dest)
    try:
        _write_temporary(tmp, [data], mode)
        expected = hashlib.sha256(data).hexdigest()
        _install(tmp, dest, expected)
        return expected
    finally:
        tmp.unlink(missing_ok=True)


def copy_verified(src: Path, dest: Path, *, mode: int | None = None) -> tuple[str, os.stat_result]:
    """Copy the regular file ``src`` (never through a link) to ``dest`` durably, checked.

    Returns the copy's SHA-256 and ``src``'s status when it was opened, for
    :func:`unlink_if_unchanged`. Raises OSError when ``src`` is no regular file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(dest)
    h = hashlib.sha256()
    src_fd = os.open(src, _READ_FLAGS)
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))

        def chunks():
            while chunk := os.read(src_fd, _CHUNK_BYTES):
                h.update(chunk)
                yield chunk

        _write_temporary(tmp, chunks(), mode)
        _install(tmp, dest, h.hexdigest())
        return h.hexdigest(), st
    finally:
        os.close(src_fd)
        tmp.unlink(missing_ok=True)


def same_file_state(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def unlink_if_unchanged(path: Path, seen: os.stat_result) -> bool:
    """Remove ``path`` if it is still the file whose status was ``seen``; False if it changed."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return True
    if not same_file_state(now, seen):
        return False
    os.unlink(path)
    return True


def unique_destination(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.1``, ``.2``, ... if taken (links count as taken)."""
    dest = folder / name
    k = 1
    while os.path.lexists(dest):
        dest = folder / f"{name}.{k}"
        k += 1
    return dest


def move_link(link: Path, dest: Path) -> str:
    """Move a symbolic link itself (never its target) to ``dest``; the link's target text."""
    target = os.readlink(link)
    try:
        os.rename(link, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        os.symlink(target, dest)  # another file system: recreate the link, then remove the original
        os.unlink(link)
    fsync_dir(dest.parent)
    return os.fsdecode(target)


def stored_path(root: Path, path: Path) -> str:
    """How the database records a file: relative to ``root`` (its configured folder) when it lies
    inside it, so that the installation can be moved or restored elsewhere; absolute otherwise."""
    path = Path(path)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def resolve_stored(root: Path, stored: str) -> Path:
    """The file a recorded path names now: a relative one under ``root``, an absolute one as it is."""
    path = Path(stored)
    return path if path.is_absolute() else Path(root) / path


@dataclass(frozen=True)
class DiskSpace:
    """Free space of the file system that holds ``folders`` (their names)."""

    folders: tuple[str, ...]
    free_bytes: int
    total_bytes: int

    @property
    def free_gb(self) -> float:
        return self.free_bytes / 1e9


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent (a folder not created yet fills the disk of its parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_space(folders: dict[str, Path]) -> list[DiskSpace]:
    """One :class:`DiskSpace` per file system holding any of ``folders`` (name -> folder), the fullest first."""
    by_device: dict[int, tuple[list[str], Path]] = {}
    for name, folder in folders.items():
        existing = _existing(Path(folder))
        by_device.setdefault(existing.stat().st_dev, ([], existing))[0].append(name)
    out = []
    for names, existing in by_device.values():
        usage = shutil.disk_usage(existing)
        out.append(DiskSpace(tuple(names), int(usage.free), int(usage.total)))
    return sorted(out, key=lambda d: d.free_bytes)
