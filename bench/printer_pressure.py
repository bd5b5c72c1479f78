"""Printer pressure: user-prompt login latency at a steady rate, alone and under an unauthenticated IPP flood.

One run, all on loopback in a temporary directory: the AD FS simulator and the
bridge (with its printer listener) as their own processes, started and seeded
as ``bench/login.py`` does.  Then, per phase, ``--rate`` user-prompt logins a
second for ``--seconds`` (open loop: each login starts on schedule whether or
not the previous ones have answered), and their latency p50/p99:

- ``baseline``: nothing else;
- ``budget``: an attacker process sends, as fast as the printer answers, the most
  expensive request the printer accepts without credentials: a
  Get-Printer-Attributes exactly at the unauthenticated budget (its values and
  bytes; "all" among the requested attributes, so the whole description comes back),
  over one kept-alive connection;
- ``over``: the attacker streams endless attribute sections (a Print-Job, chunked,
  no Expect, tiny values) on fresh connections; each is refused once the budget is
  spent (401), and the attacker reconnects at once;
- ``flood``: the ``budget`` request from 64 connections at once, more than the
  printer's lane for unauthenticated requests lets wait: most get 503 and come back.

Printed: per phase the logins/s achieved, latency p50/p99/max, the bridge's CPU
share, the attacker's request rate; then the p99 ratio of each attack phase to
the baseline (target < 2).  Exit status 1 when a login failed or the attacker's
worst case was not accepted as such; ``--require-target`` also on a missed target.

Run from the repository root: ``.venv/bin/python bench/printer_pressure.py [--rate 30 --seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(REPO))

from bench.login import (  # noqa: E402
    BENCH_EMAILS,
    CLK_TCK,
    DEMO_USERS_CSV,
    SIM_USERS,
    BenchFailed,
    CpuTimes,
    Credentials,
    bench_credentials,
    child,
    cpu_times,
    free_port,
    percentile,
    seed,
    tail,
    wait_ready,
    write_bridge_config,
)
from printers.ipp import Attribute, AttributeGroup, GroupTag, IppMessage, ValueTag, decode, encode  # noqa: E402
from printers.server import UNAUTHENTICATED_BYTES, UNAUTHENTICATED_LIMITS  # noqa: E402

GET_PRINTER_ATTRIBUTES = 0x000B
PRINT_JOB = 0x0002
IPP_OK = 0x0000
ATTACKS = ("budget", "over", "flood")
FLOOD_CONNECTIONS = 64
"""More than the lane lets wait (its rate times its longest wait: 10): the others are refused with 503
(after that wait) and come straight back."""
EXPECTED_ANSWERS = {"budget": {"IPP 0x0000"}, "over": {"HTTP 401"}, "flood": {"IPP 0x0000", "HTTP 503"}}
"""What each attacker must see: its worst case accepted (budget), refused by the budget (over), or
accepted at the lane's rate and refused (503) beyond it (flood)."""
TINY = bytes((ValueTag.KEYWORD, 0, 0, 0, 1)) + b"k"  # one more value of a 1setOf: 6 octets


# --------------------------------------------------------------------------
# The attacker (a child process: ``--attacker MODE``).


def _operation(code: int, *attributes: Attribute, end: bool = True) -> bytes:
    op = (Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
          Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en"),
          Attribute.of("printer-uri", ValueTag.URI, "ipp://127.0.0.1/ipp/print"), *attributes)
    raw = encode(IppMessage(version=(2, 0), code=code, request_id=1,
                            groups=(AttributeGroup(tag=GroupTag.OPERATION, attributes=op),)))
    return raw if end else raw[:-1]


def worst_accepted_request() -> bytes:
    """Get-Printer-Attributes with as many values as the budget allows, as long as its bytes allow, "all" first."""
    values = UNAUTHENTICATED_LIMITS.max_values - 3  # charset, language and printer-uri are values too
    empty = len(_operation(GET_PRINTER_ATTRIBUTES, Attribute.of("requested-attributes", ValueTag.KEYWORD, "all")))
    room = UNAUTHENTICATED_BYTES - empty - 5 * (values - 1)  # each further value: tag, name-length, value-length
    width = max(1, room // (values - 1))
    names = ["all", *(f"{i:0{width}d}"[-width:] for i in range(values - 1))]
    body = _operation(GET_PRINTER_ATTRIBUTES, Attribute.of("requested-attributes", ValueTag.KEYWORD, *names))
    assert len(body) <= UNAUTHENTICATED_BYTES, len(body)
    return body


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One HTTP response from a blocking socket: (status, body); ``buf`` keeps what follows it."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside the response body")
        body += data
    buf[:] = body[length:]
    return status, bytes(body[:length])


def _http_head(port: int, *headers: str) -> bytes:
    lines = ["POST /ipp/print HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/ipp", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def attack_budget(port: int, until: float) -> dict[str, object]:
    body = worst_accepted_request()
    request = _http_head(port, f"Content-Length: {len(body)}") + body
    requests = reconnects = 0
    statuses: dict[str, int] = {}
    sock = socket.create_connection(("127.0.0.1", port))
    buf = bytearray()
    try:
        while time.monotonic() < until:
            try:
                sock.sendall(request)
                status, answer = _read_response(sock, buf)
            except (ConnectionError, OSError):
                sock.close()
                sock, buf = socket.create_connection(("127.0.0.1", port)), bytearray()
                reconnects += 1
                continue
            key = f"HTTP {status}"
            if status == 200:
                if not requests:  # the first answer in full: a printer description, not an error
                    reply = decode(answer)
                    if reply.code == IPP_OK and reply.find(GroupTag.PRINTER, "printer-uuid") is None:
                        key = "IPP OK without the printer's description"
                key = key if key.startswith("IPP") else f"IPP 0x{int.from_bytes(answer[2:4], 'big'):04x}"
            statuses[key] = statuses.get(key, 0) + 1
            requests += 1
    finally:
        sock.close()
    return {"requests": requests, "statuses": statuses, "reconnects": reconnects, "request_bytes": len(body)}


def attack_over(port: int, until: float) -> dict[str, object]:
    head = _http_head(port, "Transfer-Encoding: chunked")
    start = _operation(PRINT_JOB, Attribute.of("requested-attributes", ValueTag.KEYWORD, "k"), end=False)
    block = TINY * (2 * UNAUTHENTICATED_BYTES // len(TINY))  # twice the budget in one chunk
    stream = head + b"%x\r\n" % len(start) + start + b"\r\n" + b"%x\r\n" % len(block) + block + b"\r\n"
    requests = 0
    statuses: dict[str, int] = {}
    while time.monotonic() < until:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            try:
                sock.sendall(stream)
                status, _ = _read_response(sock, bytearray())
            except (ConnectionError, OSError):
                statuses["reset"] = statuses.get("reset", 0) + 1
                continue
        statuses[f"HTTP {status}"] = statuses.get(f"HTTP {status}", 0) + 1
        requests += 1
    return {"requests": requests, "statuses": statuses, "request_bytes": len(stream)}


def attack_flood(port: int, until: float) -> dict[str, object]:
    """The budget request from several connections at once, each as fast as it is answered."""
    with ThreadPoolExecutor(FLOOD_CONNECTIONS) as pool:
        runs = list(pool.map(lambda _: attack_budget(port, until), range(FLOOD_CONNECTIONS)))
    statuses: dict[str, int] = {}
    for run in runs:
        for key, count in run["statuses"].items():  # type: ignore[attr-defined]
            statuses[key] = statuses.get(key, 0) + count
    return {"requests": sum(int(run["requests"]) for run in runs),  # type: ignore[call-overload]
            "statuses": statuses, "connections": FLOOD_CONNECTIONS, "request_bytes": runs[0]["request_bytes"]}


def run_attacker(mode: str, port: int, seconds: float) -> None:
    until = time.monotonic() + seconds
    print("ready", flush=True)
    attack = {"budget": attack_budget, "over": attack_over, "flood": attack_flood}[mode]
    stats = attack(port, until)
    stats["seconds"] = seconds
    print(json.dumps(stats), flush=True)


# --------------------------------------------------------------------------
# Logins at a steady rate.


@dataclass(frozen=True, kw_only=True, slots=True)
class Phase:
    name: str
    round: int
    latencies_ms: tuple[float, ...]
    errors: tuple[str, ...]
    wall_seconds: float
    late_starts: int
    bridge_cpu: CpuTimes
    attacker: dict[str, object] | None


async def steady_logins(url: str, device: tuple[str, str], users: Sequence[Credentials], *, rate: float,
                        seconds: float) -> tuple[list[float], list[str], float, int]:
    """rate logins a second for seconds, each started on schedule; (latencies, errors, wall, late starts)."""
    auth = "Basic " + base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
    latencies: list[float] = []
    errors: list[str] = []
    late = 0
    count = round(rate * seconds)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> None:
            user = users[i % len(users)]
            started = time.perf_counter()
            try:
                async with http.post(url, json={"email": user.email, "password": user.password},
                                     headers={"Authorization": auth}) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                errors.append(f"login {i}: {type(exc).__name__}")
                return
            if status != 200 or not (isinstance(body, dict) and body.get("session", {}).get("token")):
                code = body.get("error") if isinstance(body, dict) else None
                errors.append(f"login {i} ({user.email}): HTTP {status} {code}")
                return
            latencies.append((time.perf_counter() - started) * 1000.0)

        tasks = []
        t0 = loop.time()
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1  # the client itself fell behind its schedule
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = loop.time() - t0
    return latencies, errors, wall, late


def run_phase(name: str, number: int, *, login_url: str, device: tuple[str, str], users: Sequence[Credentials],
              bridge_pid: int, printer_port: int, work: Path, args: argparse.Namespace) -> Phase:
    attacker: subprocess.Popen[str] | None = None
    if name != "baseline":
        attacker = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--attacker", name, "--port", str(printer_port),
             "--seconds", str(args.seconds + 1.0)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=(work / f"attacker-{name}.log").open("w"), text=True,
            preexec_fn=(lambda: os.nice(args.attacker_nice)) if args.attacker_nice else None)
        assert attacker.stdout is not None
        if attacker.stdout.readline().strip() != "ready":
            raise BenchFailed(f"the {name} attacker did not start: {tail(work / f'attacker-{name}.log')}")
        time.sleep(0.5)  # let it reach full speed
    cpu0 = cpu_times(bridge_pid)
    latencies, errors, wall, late = asyncio.run(
        steady_logins(login_url, device, users, rate=args.rate, seconds=args.seconds))
    cpu = cpu_times(bridge_pid) - cpu0
    stats = None
    if attacker is not None:
        out, _ = attacker.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
    return Phase(name=name, round=number, latencies_ms=tuple(latencies), errors=tuple(errors), wall_seconds=wall,
                 late_starts=late, bridge_cpu=cpu, attacker=stats)


def add_printer(config: Path, *, port: int, outbox: Path) -> None:
    """The printer section, as in conf/bridge.yaml, on a free port with a local outbox."""
    main = yaml.safe_load(config.read_text())
    main["printer"] = {"enabled": True, "host": "127.0.0.1", "port": port, "delivery": {"outbox_dir": str(outbox)}}
    config.write_text(yaml.safe_dump(main, sort_keys=False))


def wait_printer(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchFailed(f"the printer did not listen on {port}")


# --------------------------------------------------------------------------
# The run.


def report(phases: list[Phase], args: argparse.Namespace) -> tuple[list[str], bool]:
    """Print the figures; (failures, target met).  With several rounds the target is judged on the median ratio."""
    print(f"loginbridge printer pressure: {args.rate:g} user-prompt logins/s for {args.seconds:g} s per phase, "
          f"{args.repeat} round(s), {os.cpu_count()} CPUs; unauthenticated budget {UNAUTHENTICATED_BYTES} bytes, "
          f"{UNAUTHENTICATED_LIMITS.max_attributes} attributes, {UNAUTHENTICATED_LIMITS.max_values} values")
    failures: list[str] = []
    ratios: dict[str, list[float]] = {name: [] for name in args.attacks}
    base_p99 = float("nan")
    for phase in phases:
        lat = phase.latencies_ms
        label = f"[{phase.name:>8}{'' if args.repeat == 1 else f' #{phase.round}'}]"
        cpu_share = phase.bridge_cpu.total_ms / (phase.wall_seconds * 1000.0) * 100.0
        print(f"{label} {len(lat)} logins OK in {phase.wall_seconds:.1f} s ({len(lat) / phase.wall_seconds:.1f}/s), "
              f"p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, max {max(lat, default=0):.1f} ms; "
              f"bridge CPU {cpu_share:.0f}% of one core ({1000 / CLK_TCK:.0f} ms ticks); "
              f"client late starts {phase.late_starts}")
        failures.extend(f"{phase.name} #{phase.round}: {e}" for e in phase.errors)
        if phase.attacker is None:
            base_p99 = percentile(lat, 99)
            continue
        a = phase.attacker
        rate = int(a["requests"]) / float(a["seconds"])  # type: ignore[call-overload, arg-type]
        print(f"{label} attacker: {a['requests']} requests of {a['request_bytes']} bytes ({rate:.0f}/s), "
              f"answers {a['statuses']}")
        statuses = a["statuses"]
        assert isinstance(statuses, dict)
        wanted = EXPECTED_ANSWERS[phase.name]
        if set(statuses) != wanted:
            failures.append(f"{phase.name} attacker: expected {sorted(wanted)}, got {statuses}")
        ratio = percentile(lat, 99) / base_p99 if base_p99 > 0 else float("inf")
        ratios[phase.name].append(ratio)
        print(f"{label} p99 / baseline p99 of the same round: {ratio:.2f}")
    met = True
    for name, values in ratios.items():
        ratio = statistics.median(values)
        met = met and ratio < 2.0
        rounds = "" if len(values) == 1 else f" (median of {', '.join(f'{v:.2f}' for v in values)})"
        print(f"p99 ratio under the {name} attack: {ratio:.2f}{rounds} -> target (< 2) "
              f"{'MET' if ratio < 2.0 else 'MISSED'}")
    return failures, met


def bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="loginbridge-pressure-") as tmp:
        work = Path(tmp)
        sim_port, bridge_port, printer_port = free_port(), free_port(), free_port()
        sim_url, bridge_url = f"https://127.0.0.1:{sim_port}", f"http://127.0.0.1:{bridge_port}"
        sim_ca, sim_log, bridge_log = work / "sim" / "ca.pem", work / "sim.log", work / "bridge.log"
        sim_argv = [sys.executable, "-m", "bridge", "idp-sim", "--port", str(sim_port), "--keys-dir",
                    str(work / "sim"), "--users", str(SIM_USERS)]
        phases: list[Phase] = []
        with child("simulator", sim_argv, sim_log) as sim:
            wait_ready("simulator", sim, f"{sim_url}/_sim/stats", ca_file=sim_ca, log_file=sim_log)
            config = write_bridge_config(work, bridge_port=bridge_port, sim_url=sim_url, sim_ca=sim_ca,
                                         version="1.3", token="saml2", log_level=args.log_level)
            add_printer(config, port=printer_port, outbox=work / "outbox")
            device = seed(config, tenant="example", users_csv=DEMO_USERS_CSV)
            users = bench_credentials(BENCH_EMAILS)
            with child("bridge", [sys.executable, "-m", "bridge", "serve", "--config", str(config)],
                       bridge_log) as bridge:
                wait_ready("bridge", bridge, f"{bridge_url}/healthz", ca_file=None, log_file=bridge_log)
                wait_printer(printer_port)
                login_url = f"{bridge_url}/v1/mfp/user-prompt"
                asyncio.run(steady_logins(login_url, device, users, rate=args.rate, seconds=2))  # warm-up
                for number in range(1, args.repeat + 1):
                    for name in ("baseline", *args.attacks):
                        phases.append(run_phase(name, number, login_url=login_url, device=device, users=users,
                                                bridge_pid=bridge.pid, printer_port=printer_port, work=work,
                                                args=args))
        failures, met = report(phases, args)
        if failures:
            for line in failures[:20]:
                print(f"  {line}", file=sys.stderr)
            print(f"bridge log (tail):\n{tail(bridge_log)}", file=sys.stderr)
            return 1
    return 1 if args.require_target and not met else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=30.0, help="user-prompt logins per second (default 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"attack phases after the baseline, comma-separated from {', '.join(ATTACKS)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of baseline + attacks, back to back (default 1); the target is judged on the "
                        "median ratio")
    parser.add_argument("--attacker-nice", type=int, default=0, choices=range(20), metavar="0..19",
                        help="run the attacker at this nice level (a real attacker spends its own CPU, not the "
                        "bridge machine's); default 0")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"],
                        help="the bridge's log level (default INFO, as deployed)")
    parser.add_argument("--require-target", action="store_true", help="exit 1 if a p99 ratio is 2 or more")
    parser.add_argument("--attacker", choices=ATTACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.attacker:
        run_attacker(args.attacker, args.port, args.seconds)
        return 0
    args.attacks = tuple(a for a in args.attacks.split(",") if a)
    if not set(args.attacks) <= set(ATTACKS) or args.rate <= 0 or not 1 <= args.seconds <= 600 \
            or not 1 <= args.repeat <= 20:
        print(f"--attacks takes {', '.join(ATTACKS)}; --rate must be positive; --seconds 1..600; --repeat 1..20",
              file=sys.stderr)
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
