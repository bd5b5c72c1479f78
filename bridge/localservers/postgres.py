"""A throwaway PostgreSQL for the tests and ``loginbridge cluster-demo``: Debian's own binaries, a temp dir,
loopback only.

``run_postgres()`` runs ``initdb`` (once per process; each server starts from a copy of
that cluster) and ``pg_ctl`` as the ``postgres`` user when the tests run as root (initdb
and pg_ctl refuse root), serves on a Unix socket in its temp dir (and, with ``tcp=True``,
on 127.0.0.1 at a free port), waits until a connection succeeds and yields a
:class:`PostgresServer`. The server is always stopped (``pg_ctl stop -m immediate``)
and its temp dir removed on the way out, whatever happened inside.

The pytest fixtures on top of it are in ``tests/servers/postgres.py``. The server's
``stop()``/``start()`` (and their ``*_async`` twins, which leave the event loop free) let a
test take the database away and bring it back; its data survives.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

PG_MAJOR = 15
PG_ROOT = Path("/usr/lib/postgresql")
# Where to look first: an explicit bindir (any PostgreSQL install) beats the search below.
BINDIR_ENV = "LOGINBRIDGE_PG_BINDIR"
TMPDIR_ENV = "LOGINBRIDGE_PG_TMPDIR"  # where the throwaway clusters go (default: /dev/shm, else $TMPDIR)
OS_USER = "postgres"  # the user Debian's package creates; initdb/pg_ctl run as it under root
SUPERUSER = "postgres"  # the database superuser initdb creates (-U)

# Fast start, no durability against an OS crash: nothing here outlives the test run.
# synchronous_commit stays ON on purpose: with fsync=off a commit costs a write() to the
# page cache only, and the tests kill the server with `stop -m immediate` (a crash) while
# logins run. With synchronous_commit=off a commit acknowledged in the last ~200 ms before
# that crash may be lost, which would make "the data survives a restart" flaky.
TEST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "shared_buffers": "16MB",
    "max_connections": "100",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %d '",
    "max_wal_size": "256MB",
}


class PostgresError(RuntimeError):
    """The throwaway server could not be set up, started or stopped."""


def find_bindir(major: int = PG_MAJOR) -> Path:
    """Debian's ``/usr/lib/postgresql/<major>/bin`` (never /usr/local/bin's links).

    ``$LOGINBRIDGE_PG_BINDIR`` wins when set. Without PostgreSQL ``major``, the newest
    version there is taken.
    """
    override = os.environ.get(BINDIR_ENV)
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:
        installed = sorted(
            (p.parent for p in PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()),
            key=lambda bindir: int(bindir.parent.name),
            reverse=True,
        )
        candidates.extend(b for b in installed if b.parent.name == str(major))
        candidates.extend(b for b in installed if b.parent.name != str(major))
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir.resolve()
    where = override or f"{PG_ROOT}/*/bin"
    raise PostgresError(
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {where}: "
        "`apt-get install -y postgresql` (as .ci/run does), or set " + BINDIR_ENV
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _runuser() -> str:
    found = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise PostgresError("running as root but no `runuser` (util-linux) to switch to the postgres user")
    return found


def _as_owner(cmd: list[str]) -> list[str]:
    """Under root, run ``cmd`` as the postgres OS user; otherwise as ourselves."""
    if os.geteuid() != 0:
        return cmd
    return [_runuser(), "-u", OS_USER, "--", *cmd]


def _clean_env() -> dict[str, str]:
    """Our environment without libpq's PG* variables, which would steer the tools elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _searchable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _temp_parent() -> Path:
    """Where the clusters go: $LOGINBRIDGE_PG_TMPDIR, else /dev/shm (RAM), else the temp dir.

    /dev/shm when it is a roomy, world-usable tmpfs: on this kind of machine initdb there
    takes ~3 s against ~5-10 s on the disk, and copying a cluster 0.4 s against up to 5 s.
    Not pytest's tmp_path: /tmp/pytest-of-root is 0700, the postgres user cannot enter it,
    and its long names would push the socket path near the 107-byte limit.
    """
    override = os.environ.get(TMPDIR_ENV)
    if override:
        return Path(override)
    shm = Path("/dev/shm")  # noqa: S108 (a private mkdtemp below it, chmod 711)
    with suppress(OSError):
        room = os.statvfs(shm)
        if (
            shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) and _searchable_by_others(shm)
            and room.f_bavail * room.f_frsize >= 2 << 30
        ):
            return shm
    parent = Path(tempfile.gettempdir())
    if os.geteuid() == 0 and not _searchable_by_others(parent):
        parent = Path("/tmp")  # noqa: S108 (a private mkdtemp below it)
    return parent


def _make_base_dir() -> Path:
    """A fresh temp dir the server's user owns, on a path that user can reach."""
    parent = _temp_parent()
    base = Path(tempfile.mkdtemp(prefix="lb-pg-", dir=parent))
    base.chmod(0o711)  # others may traverse (to the socket), not list
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(OS_USER)
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresError(f"no `{OS_USER}` OS user: `apt-get install -y postgresql` creates it") from None
        os.chown(base, owner.pw_uid, owner.pw_gid)
    return base


def _run(cmd: list[str], *, cwd: Path, what: str, timeout: float, log: Path | None = None) -> None:
    # Output goes to a file, never a pipe: pg_ctl's postmaster must not inherit a pipe we wait on.
    out_path = cwd / f"{what}.out"
    with open(out_path, "wb") as out:
        try:
            done = subprocess.run(  # noqa: S603 (our own argv: PostgreSQL's binaries, our paths)
                cmd, cwd=cwd, env=_clean_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{what} took more than {timeout}s: {_tail(out_path)}{_tail(log)}") from None
    if done.returncode != 0:
        raise PostgresError(f"{what} failed ({done.returncode}): {_tail(out_path)}{_tail(log)}")


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {path.name} ---\n" + "\n".join(text)


_TEMPLATES: dict[Path, Path] = {}
_TEMPLATES_LOCK = threading.Lock()


def _initdb_template(bindir: Path) -> Path:
    """A freshly initdb'd, never started data dir for ``bindir``, made once per process.

    Kept for the life of the process (removed at exit); each server copies it. Not shared
    between processes: concurrent test runs on one machine each make their own.
    """
    with _TEMPLATES_LOCK:
        if bindir in _TEMPLATES:
            return _TEMPLATES[bindir]
        base = _make_base_dir()
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        data = base / "data"
        initdb = [
            str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]
        _run(_as_owner(initdb), cwd=base, what="initdb", timeout=120)
        _TEMPLATES[bindir] = data
        return data


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class PostgresServer:
    """A running (or deliberately stopped) throwaway server. All its state lives on disk."""

    bindir: Path
    base_dir: Path  # the temp dir: holds data/, the socket and the logs
    data_dir: Path
    socket_dir: Path
    port: int
    tcp_host: str | None  # "127.0.0.1" when it also listens on TCP, else None
    log_file: Path
    user: str = SUPERUSER
    dbname: str = "postgres"
    start_timeout: float = field(default=30.0, repr=False)

    # -- connection strings -------------------------------------------------------------
    @property
    def url(self) -> str:
        """``postgresql://postgres@/postgres?host=SOCKDIR&port=PORT`` (the Unix socket)."""
        return self.url_for(self.dbname)

    @property
    def conninfo(self) -> str:
        return self.conninfo_for(self.dbname)

    @property
    def tcp_url(self) -> str:
        if self.tcp_host is None:
            raise PostgresError("this server listens on its Unix socket only (run_postgres(tcp=True) for TCP)")
        return f"postgresql://{self.user}@{self.tcp_host}:{self.port}/{self.dbname}"

    def url_for(self, dbname: str) -> str:
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{self.user}@/{quote(dbname)}?host={host}&port={self.port}"

    def conninfo_for(self, dbname: str, *, connect_timeout: int = 5) -> str:
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir), port=self.port, user=self.user, dbname=dbname, connect_timeout=connect_timeout
        )

    # -- life cycle -----------------------------------------------------------------------
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, from postmaster.pid."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Start (again) on the same data dir, port and socket; return once it accepts connections."""
        if self.is_running():
            return
        pg_ctl = str(self.bindir / "pg_ctl")
        cmd = [pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(self.start_timeout)),
               "start"]
        _run(_as_owner(cmd), cwd=self.base_dir, what="pg_ctl-start", timeout=self.start_timeout + 5, log=self.log_file)
        self.wait_ready()

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m MODE`` (immediate: a crash, like a lost database). No-op when stopped."""
        if not self.is_running():
            return
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", "20", "stop"]
        try:
            _run(_as_owner(cmd), cwd=self.base_dir, what="pg_ctl-stop", timeout=25, log=self.log_file)
        except PostgresError:
            self._kill()
            if self.is_running():
                raise

    def _kill(self) -> None:
        """The fallback: SIGQUIT (immediate shutdown) to the postmaster, then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.05)
        if self.is_running():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def start_async(self) -> None:
        await asyncio.to_thread(self.start)

    async def stop_async(self, mode: str = "immediate") -> None:
        await asyncio.to_thread(self.stop, mode)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Connect until it works (pg_ctl -w already waited; this proves the socket answers)."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            try:
                with psycopg.connect(self.conninfo_for(self.dbname, connect_timeout=2)) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"PostgreSQL does not accept connections: {exc}{_tail(self.log_file)}") from exc
                time.sleep(0.05)

    # -- databases ------------------------------------------------------------------------
    def create_database(self, name: str | None = None, *, template: str | None = None) -> PgDatabase:
        name = name or f"t_{uuid.uuid4().hex}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(query)
        return PgDatabase(server=self, name=name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE … WITH (FORCE): connections a test left open do not block it."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class PgDatabase:
    """One database on a :class:`PostgresServer`, for one test."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url_for(self.name)

    @property
    def conninfo(self) -> str:
        return self.server.conninfo_for(self.name)


@contextmanager
def run_postgres(
    *,
    tcp: bool = False,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
    major: int = PG_MAJOR,
    start_timeout: float = 30.0,
) -> Iterator[PostgresServer]:
    """initdb + start a throwaway server; stop it and remove its files on the way out.

    ``tcp``: also listen on 127.0.0.1 (at ``port``, else a free one); the Unix socket is always there.
    ``settings``: postgresql.conf lines on top of :data:`TEST_SETTINGS`.
    """
    bindir = find_bindir(major)
    base = _make_base_dir()
    server: PostgresServer | None = None
    try:
        data = base / "data"
        # initdb costs ~5 s on a 2-core machine; once per process, then a copy (~0.1 s) per server.
        _run(["cp", "-a", str(_initdb_template(bindir)), str(data)], cwd=base, what="copy-template", timeout=60)
        port = port or free_port()
        conf = dict(TEST_SETTINGS)
        conf.update(
            listen_addresses=_conf_value("127.0.0.1" if tcp else ""),
            port=str(port),
            unix_socket_directories=_conf_value(str(base)),
        )
        conf.update(settings or {})
        with open(data / "postgresql.conf", "a") as out:  # appended: the last setting wins; owner unchanged
            out.write("\n# tests/servers/postgres.py\n")
            out.writelines(f"{key} = {value}\n" for key, value in conf.items())
        server = PostgresServer(
            bindir=bindir, base_dir=base, data_dir=data, socket_dir=base, port=port,
            tcp_host="127.0.0.1" if tcp else None, log_file=base / "postgres.log", start_timeout=start_timeout,
        )
        server.start()
        yield server
    finally:
        try:
            if server is not None:
                server.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)

