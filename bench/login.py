"""Login benchmark: bridge CPU per user-prompt login against MSAL's CPU per WS-Trust exchange.

The AD FS simulator and the bridge each run as their own process, so the
bridge's CPU (utime+stime from /proc/<pid>/stat) is measured alone. The
same WS-Trust exchange is then done N times with MSAL Python's client code
in this process (``time.process_time()``). The target: the bridge spends no
more CPU per login than MSAL per exchange, although the bridge also checks
the XML signature and opens a session (MSAL checks no signature).

Run from the repository root: ``.venv/bin/python bench/login.py [--n 500 --concurrency 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msal.wstrust_request  # type: ignore[import-untyped, unused-ignore]
import requests  # type: ignore[import-untyped, unused-ignore]
import yaml

REPO = Path(__file__).resolve().parents[1]
SIM_USERS = REPO / "conf" / "idp-sim" / "users.yaml"
DEMO_USERS_CSV = REPO / "conf" / "demo" / "users-example.csv"
# Enabled accounts both in the simulator's directory and in the demo CSV.
BENCH_EMAILS = ("alice@example.com", "frontdesk@example.com", "mallory@example.com")
APPLIES_TO = "urn:loginbridge:example.com"
ENDPOINT_PATHS = {"1.3": "/adfs/services/trust/13/usernamemixed", "2005": "/adfs/services/trust/2005/usernamemixed"}
SIM_COUNTERS = {"1.3": "trust13", "2005": "trust2005"}  # the simulator's per-endpoint call counters
READY_TIMEOUT_SECONDS = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchFailed(Exception):
    """A step of the benchmark did not work; the message says which."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    email: str
    password: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadResult:
    wall_seconds: float
    latencies_ms: tuple[float, ...]
    errors: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class MsalResult:
    cpu_ms: float
    wall_seconds: float
    errors: tuple[str, ...]


# --------------------------------------------------------------------------
# Processes.


def free_port() -> int:
    """A port the kernel just handed out (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, kw_only=True, slots=True)
class CpuTimes:
    user_ms: float
    system_ms: float

    @property
    def total_ms(self) -> float:
        return self.user_ms + self.system_ms

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(user_ms=self.user_ms - other.user_ms, system_ms=self.system_ms - other.system_ms)


def cpu_times(pid: int) -> CpuTimes:
    """utime and stime of a process (all its threads), in milliseconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    # Fields 14 and 15 of proc(5); the split starts at field 3 (state).
    return CpuTimes(user_ms=int(fields[11]) * 1000.0 / CLK_TCK, system_ms=int(fields[12]) * 1000.0 / CLK_TCK)


@contextmanager
def child(name: str, argv: Sequence[str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child with its output in log_file; always stop it, killing it if it lingers."""
    with log_file.open("wb") as out:
        proc = subprocess.Popen(list(argv), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop on SIGTERM; killing pid {proc.pid}", file=sys.stderr)
                proc.kill()
                proc.wait()


def loopback_session(ca_file: Path | None) -> Any:
    """A requests session that trusts only ca_file.

    trust_env is off because requests lets REQUESTS_CA_BUNDLE (and proxy
    variables) override ``Session.verify``; the simulator's CA would be ignored.
    """
    http = requests.Session()
    http.trust_env = False
    if ca_file is not None:
        http.verify = str(ca_file)
    return http


def wait_ready(name: str, proc: subprocess.Popen[bytes], url: str, *, ca_file: Path | None, log_file: Path) -> None:
    """Poll url until it answers 200; fail early if the child died."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchFailed(f"{name} exited with status {proc.returncode} before it was ready:\n{tail(log_file)}")
        if ca_file is None or ca_file.is_file():
            try:
                with loopback_session(ca_file) as http:
                    if http.get(url, timeout=2).status_code == 200:
                        return
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise BenchFailed(f"{name} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{tail(log_file)}")


def tail(log_file: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_cli(args: Sequence[str]) -> str:
    """One ``python -m bridge`` command; its stdout, or BenchFailed with its stderr."""
    done = subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=60)
    if done.returncode != 0:
        raise BenchFailed(f"loginbridge {args[0]} {args[1]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --------------------------------------------------------------------------
# Configuration and seeding.


def write_bridge_config(work: Path, *, bridge_port: int, sim_url: str, sim_ca: Path, version: str,
                        token: str, log_level: str) -> Path:
    """A throw-away configuration like conf/, pointed at the simulator, with lockouts out of the way."""
    conf = work / "conf"
    (conf / "tenants").mkdir(parents=True)
    main = {
        "listen": {"host": "127.0.0.1", "port": bridge_port},
        "state_dir": str(work / "state"),
        "tenants_dir": "tenants",
        "secrets": {"hmac_key": {"file": str(work / "state" / "hmac.key"), "generate": True}},
        "idp_client": {"connect_timeout_seconds": 5, "timeout_seconds": 15, "max_connections_per_idp": 20},
        "logging": {"level": log_level},
    }
    tenant = {
        "id": "example",
        "name": "Example Corp",
        "domains": ["example.com"],
        "protocol": "wstrust",
        "idp_whitelist": ["127.0.0.1/32"],
        "wstrust": {
            "adfs_url": sim_url,
            "version": version,
            "applies_to": APPLIES_TO,
            "token_type": token,
            "federation_metadata": True,
            "signature_algorithms": ["rsa-sha256"],
            "clock_skew_seconds": 300,
            "subject_claim": "upn",
            "ca_file": str(sim_ca),
        },
        # Every login uses the right password; these only keep a lockout from ever mattering.
        "throttle": {"user_failures": 1000, "device_failures": 100000, "source_failures": 100000,
                     "spray_distinct_users": 100000},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main, sort_keys=False))
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant, sort_keys=False))
    return conf / "bridge.yaml"


def seed(config: Path) -> tuple[str, str]:
    """Import the demo users and enrol one user-prompt device with the CLI; returns (device id, secret)."""
    run_cli(["users", "import", "--config", str(config), "--tenant", "example", str(DEMO_USERS_CSV)])
    out = run_cli(["devices", "add", "--config", str(config), "--tenant", "example", "--name", "bench MFP",
                   "--mode", "user-prompt"])
    device = re.search(r"^device id:\s*(\S+)\s*$", out, re.MULTILINE)
    secret = re.search(r"^secret:\s*(\S+)\s*$", out, re.MULTILINE)
    if device is None or secret is None:
        raise BenchFailed("devices add printed no device id/secret")
    return device.group(1), secret.group(1)


def bench_credentials() -> list[Credentials]:
    """The bench accounts with their simulator passwords."""
    users = yaml.safe_load(SIM_USERS.read_text())["users"]
    passwords = {u["upn"]: u["password"] for u in users if u.get("enabled", True)}
    missing = [e for e in BENCH_EMAILS if e not in passwords]
    if missing:
        raise BenchFailed(f"{SIM_USERS} lacks enabled accounts {missing}")
    return [Credentials(email=e, password=passwords[e]) for e in BENCH_EMAILS]


# --------------------------------------------------------------------------
# Load.


async def run_logins(url: str, device: tuple[str, str], users: Sequence[Credentials], *, n: int,
                     concurrency: int) -> LoadResult:
    """n user-prompt logins, at most `concurrency` in flight, over keep-alive connections."""
    auth = "Basic " + base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int) -> None:
            user = users[i % len(users)]
            async with semaphore:
                started = time.perf_counter()
                try:
                    async with http.post(url, json={"email": user.email, "password": user.password},
                                         headers={"Authorization": auth}) as resp:
                        body: Any = await resp.json(content_type=None)
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    errors.append(f"login {i} ({user.email}): {type(exc).__name__}")
                    return
                latencies.append((time.perf_counter() - started) * 1000.0)
            if status != 200:
                code = body.get("error") if isinstance(body, dict) else None
                errors.append(f"login {i} ({user.email}): HTTP {status} {code}")
            elif not (isinstance(body, dict) and body.get("session", {}).get("token")):
                errors.append(f"login {i} ({user.email}): HTTP 200 without a session token")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
    return LoadResult(wall_seconds=wall, latencies_ms=tuple(latencies), errors=tuple(errors))


def run_msal(endpoint: str, ca_file: Path, users: Sequence[Credentials], *, n: int) -> MsalResult:
    """n sequential WS-Trust exchanges with MSAL's client code; this process's CPU around the loop."""
    errors: list[str] = []
    with loopback_session(ca_file) as http:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(n):
            user = users[i % len(users)]
            try:
                answer = msal.wstrust_request.send_request(
                    user.email, user.password, cloud_audience_urn=APPLIES_TO, endpoint_address=endpoint,
                    soap_action=None, http_client=http)
            except (RuntimeError, requests.RequestException) as exc:
                errors.append(f"MSAL exchange {i} ({user.email}): {type(exc).__name__}")
                continue
            if not (isinstance(answer, dict) and answer.get("token")):
                errors.append(f"MSAL exchange {i} ({user.email}): no token in the answer")
        cpu1, wall1 = time.process_time(), time.perf_counter()
    return MsalResult(cpu_ms=(cpu1 - cpu0) * 1000.0, wall_seconds=wall1 - wall0, errors=tuple(errors))


def sim_stats(sim_url: str, ca_file: Path) -> dict[str, int]:
    with loopback_session(ca_file) as http:
        resp = http.get(f"{sim_url}/_sim/stats", timeout=5)
    resp.raise_for_status()
    counters = resp.json()["counters"]
    return {str(k): int(v) for k, v in counters.items()}


def reset_sim_counters(sim_url: str, ca_file: Path) -> None:
    with loopback_session(ca_file) as http:
        resp = http.post(f"{sim_url}/_sim/control", json={"reset_counters": True}, timeout=5)
    resp.raise_for_status()


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100.0 * len(ordered)) - 1))
    return ordered[index]


# --------------------------------------------------------------------------
# The run.


def bench(args: argparse.Namespace) -> int:
    users = bench_credentials()
    failed = False
    with tempfile.TemporaryDirectory(prefix="loginbridge-bench-") as tmp:
        work = Path(tmp)
        sim_port, bridge_port = free_port(), free_port()
        sim_url, bridge_url = f"https://127.0.0.1:{sim_port}", f"http://127.0.0.1:{bridge_port}"
        sim_keys = work / "sim"
        sim_ca = sim_keys / "ca.pem"
        sim_log, bridge_log = work / "sim.log", work / "bridge.log"
        sim_argv = [sys.executable, "-m", "bridge", "idp-sim", "--port", str(sim_port), "--keys-dir", str(sim_keys),
                    "--users", str(SIM_USERS)]
        with child("simulator", sim_argv, sim_log) as sim:
            wait_ready("simulator", sim, f"{sim_url}/_sim/stats", ca_file=sim_ca, log_file=sim_log)
            config = write_bridge_config(work, bridge_port=bridge_port, sim_url=sim_url, sim_ca=sim_ca,
                                         version=args.version, token=args.token, log_level=args.log_level)
            device = seed(config)
            bridge_argv = [sys.executable, "-m", "bridge", "serve", "--config", str(config)]
            with child("bridge", bridge_argv, bridge_log) as bridge:
                wait_ready("bridge", bridge, f"{bridge_url}/healthz", ca_file=None, log_file=bridge_log)
                login_url = f"{bridge_url}/v1/mfp/user-prompt"

                warm = asyncio.run(run_logins(login_url, device, users, n=args.warmup,
                                              concurrency=args.concurrency))
                if warm.errors:
                    print(f"warm-up failed: {len(warm.errors)} of {args.warmup} logins", file=sys.stderr)
                    for line in warm.errors[:10]:
                        print(f"  {line}", file=sys.stderr)
                    print(f"bridge log (tail):\n{tail(bridge_log)}", file=sys.stderr)
                    return 1
                reset_sim_counters(sim_url, sim_ca)
                bridge_cpu0, sim_cpu0 = cpu_times(bridge.pid), cpu_times(sim.pid)
                load = asyncio.run(run_logins(login_url, device, users, n=args.n, concurrency=args.concurrency))
                bridge_cpu = cpu_times(bridge.pid) - bridge_cpu0
                sim_cpu = cpu_times(sim.pid) - sim_cpu0
                bridge_counters = sim_stats(sim_url, sim_ca)

            endpoint = sim_url + ENDPOINT_PATHS[args.version]
            msal_warm = run_msal(endpoint, sim_ca, users, n=args.warmup)
            reset_sim_counters(sim_url, sim_ca)
            msal = run_msal(endpoint, sim_ca, users, n=args.n)
            msal_counters = sim_stats(sim_url, sim_ca)

        ok_logins = args.n - len(load.errors)
        print(f"loginbridge login benchmark: WS-Trust {args.version}, token {args.token}, "
              f"N={args.n}, C={args.concurrency}, warm-up {args.warmup}, bridge log level {args.log_level}, "
              f"{os.cpu_count()} CPUs")
        print(f"bridge: {ok_logins}/{args.n} logins OK in {load.wall_seconds:.2f} s wall = "
              f"{args.n / load.wall_seconds:.1f} logins/s")
        print(f"bridge: latency p50 {percentile(load.latencies_ms, 50):.1f} ms, "
              f"p95 {percentile(load.latencies_ms, 95):.1f} ms, max {max(load.latencies_ms, default=0.0):.1f} ms")
        bridge_per = bridge_cpu.total_ms / args.n
        print(f"bridge: CPU {bridge_cpu.total_ms:.0f} ms total (user {bridge_cpu.user_ms:.0f} + system "
              f"{bridge_cpu.system_ms:.0f}) = {bridge_per:.2f} ms per login "
              f"(process {bridge.pid}, /proc stat, {1000 / CLK_TCK:.0f} ms ticks)")
        print(f"simulator: CPU {sim_cpu.total_ms / args.n:.2f} ms per login (issuing and signing the token)")
        print(f"simulator counters during the bridge run: {format_counters(bridge_counters)}")
        trust_calls = bridge_counters.get(SIM_COUNTERS[args.version], 0)
        print(f"IdP calls per login: {trust_calls / args.n:.3f} "
              f"({trust_calls} WS-Trust {args.version} calls for {args.n} logins)")
        msal_per = msal.cpu_ms / args.n
        print(f"MSAL: {args.n - len(msal.errors)}/{args.n} exchanges OK in {msal.wall_seconds:.2f} s wall "
              f"(sequential), CPU {msal.cpu_ms:.0f} ms = {msal_per:.2f} ms per exchange "
              f"(no signature check, no session)")
        print(f"simulator counters during the MSAL run: {format_counters(msal_counters)}")
        if args.token != "saml2":
            print("note: MSAL requests no token type; the simulator chose its default for the MSAL run")
        ratio = bridge_per / msal_per if msal_per > 0 else float("inf")
        held = ratio <= 1.0
        print(f"ratio bridge/MSAL CPU per login: {ratio:.2f} -> target (<= 1.00) {'MET' if held else 'MISSED'}")

        for label, errors in (("bridge", load.errors), ("MSAL", msal.errors + msal_warm.errors)):
            if errors:
                failed = True
                print(f"{label}: {len(errors)} failures", file=sys.stderr)
                for line in errors[:20]:
                    print(f"  {line}", file=sys.stderr)
        checks = (("bridge", trust_calls, bridge_counters.get("issued", 0), ok_logins),
                  ("MSAL", msal_counters.get(SIM_COUNTERS[args.version], 0), msal_counters.get("issued", 0),
                   args.n - len(msal.errors)))
        for label, calls, issued, ok in checks:
            if not calls == issued == ok:
                failed = True
                print(f"{label}: expected one IdP call and one issued token per success; saw {calls} calls, "
                      f"{issued} tokens for {ok} successes", file=sys.stderr)
        if failed:
            print(f"bridge log (tail):\n{tail(bridge_log)}", file=sys.stderr)
            return 1
        if args.require_target and not held:
            return 1
    return 0


def format_counters(counters: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "(none)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=500, help="measured logins and MSAL exchanges (default 500)")
    parser.add_argument("--concurrency", type=int, default=8, help="logins in flight (default 8)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured logins first (default 20)")
    parser.add_argument("--version", choices=["1.3", "2005"], default="1.3", help="WS-Trust version (default 1.3)")
    parser.add_argument("--token", choices=["saml2", "saml11"], default="saml2", help="token type the bridge asks for")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"],
                        help="the bridge's log level (default INFO, as deployed)")
    parser.add_argument("--require-target", action="store_true", help="exit 1 if the CPU target is missed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.warmup < 1:
        print("--n, --concurrency and --warmup must be at least 1", file=sys.stderr)
        return 2
    try:
        return bench(args)
    except BenchFailed as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
