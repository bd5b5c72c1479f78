"""HAProxy 2.6 in front of local instances, for the tests and ``loginbridge cluster-demo``: a generated config,
foreground, loopback.

``run_haproxy({"a": 8081, "b": 8082})`` writes a config (a frontend on 127.0.0.1 at a free
port, a round-robin backend of those ``127.0.0.1:PORT`` servers health-checked with
``GET /readyz`` every 200 ms, an admin ``stats socket`` in its temp dir), starts
``haproxy -f CFG -db`` as a child process, waits until it answers and yields a
:class:`HAProxy`. The process is always killed on the way out.

HAProxy counts a server UP from the start, before any check: ``wait_until_up()`` waits for
servers that are UP *and* passed a health check (``L7OK``). Use the ``*_async`` waits from
async tests whose backends are served by the same event loop (a blocking wait would starve
the health checks it waits for).

The pytest fixture on top of it (``haproxy_factory``) is in ``tests/servers/haproxy.py``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

BACKEND = "be_app"
FRONTEND = "fe_app"


class HAProxyError(RuntimeError):
    """HAProxy could not be found, configured or started."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise HAProxyError("no haproxy binary: `apt-get install -y haproxy` (as .ci/run does)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass(frozen=True)
class HealthCheck:
    """``option httpchk GET <path>``; a server is DOWN after ``fall`` failed checks, UP after ``rise`` good ones."""

    path: str = "/readyz"
    interval: float = 0.2
    fall: int = 2
    rise: int = 2
    timeout: float = 1.0


def render_config(
    servers: Mapping[str, int],
    *,
    port: int,
    stats_socket: Path,
    check: HealthCheck,
    host: str = "127.0.0.1",
    server_timeout: float = 30.0,
    forwardfor: bool = True,
    extra_backend: Sequence[str] = (),
) -> str:
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    stats timeout 5s",
        "    maxconn 1024",
        # Server state changes (UP/DOWN) land in the log file; per-request lines (info) do not.
        "    log stderr format short local0 notice",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 1s",
        "    timeout client 30s",
        f"    timeout server {_ms(server_timeout)}",
        "    timeout http-request 5s",
        "    timeout http-keep-alive 5s",
        "    timeout queue 2s",
        f"    timeout check {_ms(check.timeout)}",
        # A connection refused by a dead instance is retried once on another server.
        "    retries 2",
        "    option redispatch 1",
        "    http-reuse safe",
        "",
        f"frontend {FRONTEND}",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
    ]
    if forwardfor:
        lines.append("    option forwardfor")
    lines += [
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        f"    option httpchk GET {check.path}",
        "    http-check expect status 200",
        f"    default-server check inter {_ms(check.interval)} fastinter {_ms(check.interval / 2)}"
        f" downinter {_ms(check.interval)} fall {check.fall} rise {check.rise}",
        *(f"    {line}" for line in extra_backend),
    ]
    lines += [f"    server {name} {host}:{server_port}" for name, server_port in servers.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServerStat:
    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2" (going down), "DOWN 1/2" (going up), no check
    check_status: str  # L7OK, L7STS (bad status), L4CON (refused), L4TOUT, INI (not checked yet) …; "* " dropped
    sessions_total: int

    @property
    def healthy(self) -> bool:
        """UP and its last check passed (HAProxy starts servers UP before checking them)."""
        return self.status == "UP" and self.check_status == "L7OK"


@dataclass(frozen=True)
class HAProxy:
    """A running HAProxy; ``url`` is its frontend."""

    url: str
    port: int
    servers: tuple[str, ...]
    base_dir: Path
    config_file: Path
    stats_socket: Path
    log_file: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    backend: str = BACKEND

    # -- the admin socket ----------------------------------------------------------------
    def command(self, line: str, timeout: float = 5.0) -> str:
        """One command on the stats socket (``show stat``, ``set server be_app/a state maint`` …)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, ServerStat]:
        """The backend's servers, by name, from ``show stat``."""
        text = self.command("show stat").lstrip("# ")
        result: dict[str, ServerStat] = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") != self.backend or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            name = row["svname"]
            result[name] = ServerStat(
                name=name, status=row.get("status", ""), check_status=row.get("check_status", "").lstrip("* "),
                sessions_total=int(row.get("stot") or 0),
            )
        return result

    def healthy_servers(self) -> set[str]:
        return {name for name, stat in self.stats().items() if stat.healthy}

    def set_server_state(self, name: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``: take a server out of rotation without touching it."""
        answer = self.command(f"set server {self.backend}/{name} state {state}").strip()
        if answer:
            raise HAProxyError(f"set server {name} state {state}: {answer}")

    # -- waiting ---------------------------------------------------------------------------
    def _holds(self, predicate: Callable[[dict[str, ServerStat]], bool]) -> bool:
        self.raise_if_exited()
        return predicate(self.stats())

    def _timed_out(self, what: str, within: float) -> HAProxyError:
        return HAProxyError(f"not {what} within {within}s: {self.stats()}{_tail(self.log_file)}")

    def _poll(self, predicate: Callable[[dict[str, ServerStat]], bool], what: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not self._holds(predicate):
            if time.monotonic() > deadline:
                raise self._timed_out(what, within)
            time.sleep(0.05)

    async def _poll_async(self, predicate: Callable[[dict[str, ServerStat]], bool], what: str, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                while True:
                    if self._holds(predicate):
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise self._timed_out(what, within) from None

    @staticmethod
    def _up(count: int) -> Callable[[dict[str, ServerStat]], bool]:
        return lambda stats: sum(stat.healthy for stat in stats.values()) >= count

    @staticmethod
    def _status(name: str, status: str) -> Callable[[dict[str, ServerStat]], bool]:
        return lambda stats: stats[name].status == status

    def wait_until_up(self, count: int | None = None, within: float = 10.0) -> set[str]:
        """Block until at least ``count`` servers (all by default) are UP and checked; return those."""
        want = len(self.servers) if count is None else count
        self._poll(self._up(want), f"{want} servers UP", within)
        return self.healthy_servers()

    async def wait_until_up_async(self, count: int | None = None, within: float = 10.0) -> set[str]:
        """:meth:`wait_until_up` without blocking the event loop (whose apps answer the checks)."""
        want = len(self.servers) if count is None else count
        await self._poll_async(self._up(want), f"{want} servers UP", within)
        return self.healthy_servers()

    def wait_for_status(self, name: str, status: str, within: float = 10.0) -> None:
        """Block until server ``name`` shows ``status`` exactly (``DOWN``, ``UP``, ``MAINT``)."""
        self._poll(self._status(name, status), f"{name} {status}", within)

    async def wait_for_status_async(self, name: str, status: str, within: float = 10.0) -> None:
        await self._poll_async(self._status(name, status), f"{name} {status}", within)

    # -- the process -------------------------------------------------------------------------
    def raise_if_exited(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise HAProxyError(f"haproxy exited ({code}){_tail(self.log_file)}")

    def stop(self) -> None:
        """SIGTERM (HAProxy's hard stop), then SIGKILL; idempotent."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n--- haproxy log ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _normalise(servers: Mapping[str, int] | Sequence[int]) -> dict[str, int]:
    named = dict(servers) if isinstance(servers, Mapping) else {f"s{i}": p for i, p in enumerate(servers, 1)}
    if not named:
        raise HAProxyError("HAProxy needs at least one backend server")
    return named


def _start(binary: str, base: Path, config: str, port: int, names: tuple[str, ...], timeout: float) -> HAProxy:
    cfg = base / "haproxy.cfg"
    cfg.write_text(config)
    log_file = base / "haproxy.log"
    with open(log_file, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 (the haproxy binary, our generated config)
            [binary, "-f", str(cfg), "-db"], cwd=base, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    proxy = HAProxy(
        url=f"http://127.0.0.1:{port}", port=port, servers=names, base_dir=base, config_file=cfg,
        stats_socket=base / "admin.sock", log_file=log_file, process=process,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            proxy.raise_if_exited()
            with suppress(OSError):
                proxy.command("show info", timeout=1.0)
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return proxy
            if time.monotonic() > deadline:
                raise HAProxyError(f"haproxy did not answer within {timeout}s{_tail(log_file)}")
            time.sleep(0.02)
    except BaseException:
        proxy.stop()
        raise


@contextmanager
def run_haproxy(
    servers: Mapping[str, int] | Sequence[int],
    *,
    check: HealthCheck | None = None,
    port: int | None = None,
    server_timeout: float = 30.0,
    forwardfor: bool = True,
    extra_backend: Sequence[str] = (),
    start_timeout: float = 10.0,
) -> Iterator[HAProxy]:
    """Start HAProxy in front of ``servers`` (name -> port on 127.0.0.1, or a list of ports: s1, s2 …)."""
    binary = find_haproxy()
    named = _normalise(servers)
    base = Path(tempfile.mkdtemp(prefix="lb-haproxy-"))
    proxy: HAProxy | None = None
    try:
        for attempt in range(3):  # a free port can be taken before HAProxy binds it: try another
            chosen = port or free_port()
            config = render_config(
                named, port=chosen, stats_socket=base / "admin.sock", check=check or HealthCheck(),
                server_timeout=server_timeout, forwardfor=forwardfor, extra_backend=extra_backend,
            )
            try:
                proxy = _start(binary, base, config, chosen, tuple(named), start_timeout)
                break
            except HAProxyError as exc:
                if port is not None or attempt == 2 or "cannot bind socket" not in str(exc):
                    raise
        assert proxy is not None
        yield proxy
    finally:
        try:
            if proxy is not None:
                proxy.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)

