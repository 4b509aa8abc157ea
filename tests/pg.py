"""A real, throwaway PostgreSQL server for the tests (no Docker, no service).

``PostgresServer.start()`` runs ``initdb`` into a fresh temporary directory, starts the
server with ``pg_ctl -w`` listening on 127.0.0.1 on a free port (and on a private unix
socket directory), with trust authentication, durability switched off (``fsync=off``:
the data is thrown away) and a non-UTC server time zone (Australia/Sydney). ``stop()`` stops it with ``pg_ctl stop -m immediate`` and
removes the directory.

PostgreSQL refuses to run as root, so when we are root (CI, containers) the server
binaries run as the ``postgres`` system user, which is created if it does not exist.

The binaries are looked up in ``$NOWCAST_PG_BINDIR``, next to ``pg_ctl`` on ``PATH``,
``/usr/local/bin`` and ``/usr/lib/postgresql/<newest>/bin``.

Run ``python tests/pg.py`` to print the server version that the tests would use.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"  # the database superuser created by initdb (and the OS user when root)
NEEDED = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries on this machine."""


def ci_enabled() -> bool:
    """True when the environment variable CI is set (to anything but empty/0/false/no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _is_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in NEEDED)


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres; raises PostgresUnavailable."""
    candidates: list[Path] = []
    if os.environ.get("NOWCAST_PG_BINDIR"):
        candidates.append(Path(os.environ["NOWCAST_PG_BINDIR"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.append(Path("/usr/local/bin"))

    def _version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for cand in candidates:
        if _is_bindir(cand):
            # Resolve symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl)
            # so that pg_ctl finds the matching postgres binary beside it.
            real = Path(os.path.realpath(cand / "pg_ctl")).parent
            return real if _is_bindir(real) else cand
    looked = ", ".join(str(c) for c in candidates) or "(nowhere)"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries ({', '.join(NEEDED)}) not found; looked in {looked}. "
        "Install them (Debian: apt-get install postgresql) or set NOWCAST_PG_BINDIR."
    )


def server_version(bindir: Path | None = None) -> str:
    """E.g. 'postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'."""
    bindir = bindir or find_bindir()
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def ensure_os_user(name: str = PG_USER) -> pwd.struct_passwd:
    """The OS account that runs the server; created (system user) when missing and we are root."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise PostgresUnavailable(f"no OS user {name!r} and not root to create it") from None
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True, text=True,
    )
    return pwd.getpwnam(name)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster; ``url(dbname)`` gives SQLAlchemy URLs into it."""

    bindir: Path = field(default_factory=lambda: find_bindir())
    host: str = "127.0.0.1"
    port: int = 0
    base_dir: Path | None = None
    version: str = ""
    _run_as: pwd.struct_passwd | None = None
    _running: bool = False
    _opts: str = ""

    # -- paths -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "server.log"

    @property
    def major(self) -> int:
        """The server's major version (15 for 'postgres (PostgreSQL) 15.18 ...')."""
        m = re.search(r"\)\s*(\d+)", self.version) or re.search(r"(\d+)", self.version)
        return int(m.group(1)) if m else 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{dbname}"

    # -- running the binaries ----------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
            env.update(HOME=str(self.base_dir), USER=self._run_as.pw_name, LOGNAME=self._run_as.pw_name)
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.base_dir, env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
        )

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = self.log_file.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n--- server log ---\n{log}"
            )

    # -- life cycle --------------------------------------------------------------------
    def start(self, attempts: int = 3) -> PostgresServer:
        self.version = server_version(self.bindir)
        if os.geteuid() == 0:
            self._run_as = ensure_os_user(PG_USER)
        # /tmp (not $TMPDIR, which may sit under a root-only home) so postgres can reach it.
        tmp_root = os.environ.get("NOWCAST_PG_TMPDIR") or ("/tmp" if self._run_as else None)
        self.base_dir = Path(tempfile.mkdtemp(prefix="nowcast-pg-", dir=tmp_root))
        atexit.register(self.stop)
        try:
            self.socket_dir.mkdir()
            if self._run_as is not None:
                for p in (self.base_dir, self.socket_dir):
                    os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
            self._check(
                self._run("initdb", "-D", str(self.data_dir), "-U", PG_USER, "--auth=trust",
                          "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
                "initdb",
            )
            for attempt in range(attempts):
                self.port = free_port(self.host)
                # timezone: deliberately not UTC, so code that leans on the server's zone shows up.
                opts = (
                    f"-c listen_addresses={self.host} -p {self.port} -k {self.socket_dir} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200 -c timezone=Australia/Sydney -c log_min_messages=warning"
                )
                self._opts = opts
                proc = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                                 "-l", str(self.log_file), "-o", opts, timeout=90)
                if proc.returncode == 0:
                    self._running = True
                    break
                if attempt == attempts - 1:
                    self._check(proc, "pg_ctl start")
                # else most likely someone took the port meanwhile: try another one
            return self
        except BaseException:
            self.stop()
            raise

    def pause(self) -> None:
        """Stop the server but keep its data (an outage); :meth:`resume` brings it back."""
        self._check(self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", timeout=60), "pg_ctl stop")

    def resume(self) -> None:
        """Start the paused server again on the same port."""
        self._check(self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file),
                              "-o", self._opts, timeout=90), "pg_ctl start")

    def stop(self) -> None:
        if self._running:
            self._running = False
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", timeout=60)
        if self.base_dir is not None and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------
    def _admin(self):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=PG_USER, dbname="postgres",
                               autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """Creates an empty database (a unique name unless given); returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsafe database name {name!r}")
        # FILE_COPY is much faster than PG15's default WAL_LOG for a tiny template.
        strategy = " STRATEGY FILE_COPY" if self.major >= 15 else ""
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0{strategy}')
        return name

    def drop_database(self, name: str) -> None:
        """Drops ``name``, disconnecting whoever is still connected (engines not disposed)."""
        with self._admin() as conn:
            if self.major >= 13:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    print(f"PostgreSQL server for the tests: {server_version()} ({find_bindir()})")
