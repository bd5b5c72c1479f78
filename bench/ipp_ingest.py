"""IPP ingest benchmark: the bridge's printer against CUPS's ippeveprinter, 50 MB and 500 MB PDFs.

Both printers run as their own processes on loopback in the same run;
``ipptool -C`` (chunked, as print queues send) prints each generated PDF with
``print-job.test``.  Reported per size: wall time per job for each printer and
the throughput ratio (ippeveprinter time / bridge time), unauthenticated and
authenticated, and the bridge's RSS growth while it takes the 500 MB job
(sampled from /proc/<pid>/status; VmHWM also shown).  Each size runs
``--repeat`` times (default 3) and the median is reported with every run (the
first job in a fresh process pays its warm-up).

- ippeveprinter runs with ``-c /bin/true`` and ``-r off`` under a private
  dbus-daemon (it needs a D-Bus even without DNS-SD).  Authenticated
  ippeveprinter (``-A``, PAM) needs a local account: pass ``--pam-user
  NAME:PASSWORD``, or ``--create-pam-user`` (root only) to add a temporary
  one that is removed afterwards; without either that column is skipped.
- The bridge unauthenticated is the printer application alone with
  ``auth_required=False`` (a benchmark-only switch, not a configuration
  key); authenticated it is the whole demo (bridge + AD FS simulator, alice's
  demo password: one WS-Trust call per job, cached for the rest).

Targets (issue 5): bridge >= 0.8 of ippeveprinter's throughput
unauthenticated, faster than ippeveprinter authenticated, RSS growth < 32 MB.

Run from the repository root: ``.venv/bin/python bench/ipp_ingest.py [--sizes 50,500] [--create-pam-user]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ALICE = ("alice@example.com", "alice-demo-pass")
MB = 1024 * 1024


# ---------------------------------------------------------------------------
# Documents


def write_pdf(path: Path, size: int) -> None:
    """A valid one-page PDF of about ``size`` bytes: the bulk is an (ignored) stream object."""
    header = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length 0 >>\nstream\n\nendstream",
    ]
    filler = max(0, size - 1024)
    chunk = secrets.token_bytes(MB)
    offsets = []
    with path.open("wb") as out:
        out.write(header)
        pos = len(header)
        for number, body in enumerate(objects, start=1):
            offsets.append(pos)
            data = b"%d 0 obj\n" % number + body + b"\nendobj\n"
            out.write(data)
            pos += len(data)
        offsets.append(pos)
        head = b"5 0 obj\n<< /Length %d >>\nstream\n" % filler
        out.write(head)
        left = filler
        while left:
            n = min(left, len(chunk))
            out.write(chunk[:n])
            left -= n
        tail = b"\nendstream\nendobj\n"
        out.write(tail)
        pos += len(head) + filler + len(tail)
        xref = pos
        out.write(b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
        out.write(b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)


# ---------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {within} s")


@contextmanager
def running(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_port(port, proc)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def private_dbus(workdir: Path) -> Iterator[dict[str, str]]:
    """A session dbus-daemon that ippeveprinter can use as its system bus (protocols.md section 5)."""
    address = f"unix:path={workdir / 'dbus.sock'}"
    out = subprocess.run(["dbus-daemon", "--session", f"--address={address}", "--fork", "--print-pid"],
                         capture_output=True, check=True, text=True)
    pid = int(out.stdout.split()[0])
    try:
        yield {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address, "DBUS_SESSION_BUS_ADDRESS": address}
    finally:
        os.kill(pid, 15)


@contextmanager
def pam_user(spec: str | None, create: bool) -> Iterator[tuple[str, str] | None]:
    if spec:
        name, _, password = spec.partition(":")
        yield name, password
        return
    if not create:
        yield None
        return
    if os.geteuid() != 0:
        raise SystemExit("--create-pam-user needs root")
    name, password = f"ippbench{secrets.randbelow(10**6)}", secrets.token_urlsafe(12)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True)
        yield name, password
    finally:
        subprocess.run(["userdel", name], check=False)


class RssSampler:
    """Peak VmRSS of a process, sampled every few milliseconds in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = self.read("VmRSS")
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.read("VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read("VmRSS"))


def print_job(uri: str, document: Path, workdir: Path) -> float:
    """Wall time of one chunked Print-Job with ipptool; exits on failure."""
    start = time.perf_counter()
    out = subprocess.run(["ipptool", "-C", "-T", "900", "-f", str(document), uri,
                          "/usr/share/cups/ipptool/print-job.test"], capture_output=True, text=True, cwd=workdir)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"print-job.test failed against {uri.split('@')[-1]}:\n{out.stdout}{out.stderr}")
    return elapsed


def wait_files(directory: Path, count: int, within: float = 600) -> None:
    """The bridge delivers each job to the outbox; let that copy finish before the next job (disk)."""
    deadline = time.monotonic() + within
    while len(list(directory.glob("*.json"))) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{directory}: {count} deliveries not done")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# Bridge configurations


def bridge_config(root: Path, printer_port: int, *, sim_port: int | None) -> Path:
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True, exist_ok=True)
    main = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "state_dir": str(root / "state"),
        "secrets": {"hmac_key": {"file": str(root / "state" / "hmac.key"), "generate": True}},
        "logging": {"level": "WARNING"},
        "printer": {"enabled": True, "host": "127.0.0.1", "port": printer_port, "max_job_mb": 1024,
                    "delivery": {"outbox_dir": str(root / "outbox")}},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    if sim_port is not None:
        tenant = yaml.safe_load((REPO / "conf" / "tenants" / "example.yaml").read_text())
        tenant["wstrust"]["adfs_url"] = f"https://127.0.0.1:{sim_port}"
        tenant["wstrust"]["ca_file"] = str(root / "state" / "idp-sim" / "ca.pem")
        (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant))
    return conf / "bridge.yaml"


def serve_printer(config_path: str) -> None:
    """``--serve-printer``: the printer application alone, without authentication (benchmark only)."""
    from aiohttp import web

    from bridge.config import load_config
    from printers.server import make_printer_app

    config = load_config(config_path, require_files=False)
    assert config.printer is not None
    web.run_app(make_printer_app(config, auth_required=False), host=config.printer.host, port=config.printer.port,
                print=None, access_log=None)


# ---------------------------------------------------------------------------


@dataclass
class Results:
    times: dict[tuple[str, int], float] = field(default_factory=dict)
    rss: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def measure(label: str, uri: str, docs: dict[int, Path], workdir: Path, results: Results, *,
            pid: int | None = None, outbox: Path | None = None, repeat: int = 1) -> None:
    delivered = 0
    for size, document in docs.items():
        runs: list[float] = []
        for _ in range(repeat):
            if pid is not None and size == max(docs):
                with RssSampler(pid) as sampler:
                    elapsed = print_job(uri, document, workdir)
                results.rss[label] = (sampler.baseline, sampler.peak, sampler.read("VmHWM"))
            else:
                elapsed = print_job(uri, document, workdir)
            runs.append(elapsed)
            if outbox is not None:
                delivered += 1
                wait_files(outbox, delivered)
            else:
                time.sleep(0.5)  # ippeveprinter takes one job at a time
        median = statistics.median(runs)
        results.times[(label, size)] = median
        print(f"  {label:<20} {size:>4} MB  median {median:7.3f} s ({size / median:6.1f} MB/s)"
              f"  runs {' '.join(f'{r:.3f}' for r in runs)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500", help="document sizes in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is reported")
    parser.add_argument("--pam-user", help="NAME:PASSWORD of a local account for authenticated ippeveprinter")
    parser.add_argument("--create-pam-user", action="store_true", help="add (and remove) a temporary account")
    parser.add_argument("--serve-printer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_printer:
        serve_printer(args.serve_printer)
        return
    for tool in ("ipptool", "ippeveprinter", "dbus-daemon"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install cups-ipp-utils dbus)")

    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="ipp-ingest-"))
    results = Results()
    try:
        docs = {}
        for size in sizes:
            docs[size] = workdir / f"doc-{size}mb.pdf"
            write_pdf(docs[size], size * MB)
        print(f"documents: {', '.join(f'{s} MB' for s in sizes)} in {workdir}", flush=True)

        with private_dbus(workdir) as env, pam_user(args.pam_user, args.create_pam_user) as account:
            port = free_port()
            (workdir / "eve-spool").mkdir()
            eve = ["ippeveprinter", "-r", "off", "-c", "/bin/true", "-d", str(workdir / "eve-spool"),
                   "-f", "application/pdf", "-n", "localhost", "-p", str(port)]
            print("ippeveprinter, unauthenticated", flush=True)
            with running([*eve, "BenchEve"], port, workdir / "eve.log", env):
                measure("ippeveprinter", f"ipp://127.0.0.1:{port}/ipp/print", docs, workdir, results,
                        repeat=args.repeat)
            if account is not None:
                print("ippeveprinter, authenticated (PAM, Basic)", flush=True)
                port = free_port()
                user, password = account
                with running([*eve[:-1], str(port), "-A", "BenchEveAuth"], port, workdir / "eve-auth.log", env):
                    measure("ippeveprinter+auth", f"ipp://{quote(user)}:{quote(password)}@127.0.0.1:{port}"
                            "/ipp/print", docs, workdir, results, repeat=args.repeat)

        print("bridge printer, unauthenticated", flush=True)
        root = workdir / "bridge-open"
        port = free_port()
        config = bridge_config(root, port, sim_port=None)
        with running([PYTHON, str(Path(__file__).resolve()), "--serve-printer", str(config)], port,
                     workdir / "bridge-open.log") as pid:
            measure("bridge", f"ipp://127.0.0.1:{port}/ipp/print", docs, workdir, results, pid=pid,
                    outbox=root / "outbox", repeat=args.repeat)

        print("bridge printer, authenticated (demo: bridge + AD FS simulator)", flush=True)
        root = workdir / "bridge-auth"
        port, sim_port = free_port(), free_port()
        config = bridge_config(root, port, sim_port=sim_port)
        demo = [PYTHON, "-m", "bridge", "demo", "--config", str(config), "--sim-port", str(sim_port),
                "--seed-dir", str(REPO / "conf" / "demo"), "--sim-users", str(REPO / "conf" / "idp-sim" / "users.yaml")]
        with running(demo, port, workdir / "bridge-auth.log") as pid:
            uri = f"ipp://{quote(ALICE[0], safe='')}:{ALICE[1]}@127.0.0.1:{port}/ipp/print"
            measure("bridge+auth", uri, docs, workdir, results, pid=pid, outbox=root / "outbox", repeat=args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, sizes)


def report(results: Results, sizes: list[int]) -> None:
    print("\nsize    ippeve   bridge   ratio  | ippeve+auth  bridge+auth  ratio")
    for size in sizes:
        eve, bridge = results.times.get(("ippeveprinter", size)), results.times.get(("bridge", size))
        eve_a, bridge_a = results.times.get(("ippeveprinter+auth", size)), results.times.get(("bridge+auth", size))
        line = f"{size:>4} MB {eve or 0:7.3f}s {bridge or 0:7.3f}s {(eve or 0) / (bridge or 1):6.2f}  |"
        if eve_a is not None and bridge_a is not None:
            line += f" {eve_a:10.3f}s {bridge_a:11.3f}s {eve_a / bridge_a:6.2f}"
        elif bridge_a is not None:
            line += f" {'n/a':>10}  {bridge_a:11.3f}s {'n/a':>6}"
        print(line)
    print("(ratio = ippeveprinter time / bridge time = bridge throughput relative to ippeveprinter)")
    for label, (base, peak, hwm) in results.rss.items():
        print(f"{label}: RSS {base / MB:.1f} MB before the {max(sizes)} MB job, peak {peak / MB:.1f} MB "
              f"(growth {(peak - base) / MB:.1f} MB), VmHWM {hwm / MB:.1f} MB")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
