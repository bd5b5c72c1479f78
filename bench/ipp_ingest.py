"""IPP ingest benchmark: the bridge's printer against CUPS's ippeveprinter, plain IPP and IPPS, 50 MB and 500 MB PDFs.

Both printers run as their own processes on loopback in the same run;
``ipptool -C`` (chunked, as print queues send) prints each generated PDF.
Cases (``--cases``, all by default), each for every ``--sizes`` size unless noted:

- ``ipp``: plain IPP, unauthenticated (issue 5);
- ``ipp+auth``: plain IPP, HTTP Basic (issue 5);
- ``ipps``: IPP over TLS, unauthenticated (issue 13);
- ``ipps+auth``: IPP over TLS, HTTP Basic (issue 13);
- ``ipps+gzip``: IPP over TLS, unauthenticated, the largest size only, sent with
  ``compression gzip``: a ``.test`` file written to the temporary directory has
  ``ATTR keyword compression gzip`` and ``COMPRESSION gzip`` (ipptool deflates the
  document as it sends it; ``COMPRESSION`` alone does not add the attribute, and a
  ``FILE`` that is already gzipped is inflated by ipptool before sending, so the
  document cannot be compressed ahead of time).  Both printers inflate as they spool.

Every case starts fresh processes of both printers, one after the other.  Per case
and size: the median wall time per job (``--repeat`` runs, default 3; the first job
in a fresh process pays its warm-up), the throughput ratio (ippeveprinter time /
bridge time), the CPU time per job of each printer process (utime+stime from
/proc/<pid>/stat over the job) and of ipptool (``RUSAGE_CHILDREN``), and for the
largest size the bridge's RSS growth while it takes the job (sampled from
/proc/<pid>/status every 5 ms; the worst of the runs) and its VmHWM.  Each job's
spooled or delivered document is checked to have the document's size (for gzip:
it was inflated), then removed.  A summary table with the targets and PASS/MISS
per line ends the output.

- ippeveprinter runs with ``-c /bin/true`` and ``-r off`` under a private
  dbus-daemon (it needs a D-Bus even without DNS-SD), and always with ``-K
  <tmp>/eve-keys``: CUPS 2.4 (GnuTLS) serves TLS on the printer's one port when
  the first byte of a connection is a TLS handshake, and creates a self-signed
  ``localhost.crt``/``localhost.key`` (the ``-n`` name, RSA 2048) in that
  directory on the first TLS connection (the directory must exist: else every
  handshake fails, "Error in the pull function" in ipptool); without ``-K`` it
  would use /etc/cups/ssl or ~/.cups/ssl.
  Authenticated ippeveprinter (``-A``, PAM) needs a local account: pass
  ``--pam-user NAME:PASSWORD``, or ``--create-pam-user`` (root only) to add a
  temporary one that is removed afterwards; without either the authenticated
  ippeveprinter lines are skipped (the bridge is still measured).
- ipptool runs with ``HOME`` set to the temporary directory (so ~/.cups is not
  read or written).  CUPS 2.4's ipptool does not verify a server certificate
  (neither the self-signed one of ippeveprinter nor the bridge's) and stores nothing.
- The bridge's TLS cases have ``printer.tls`` set to a certificate for localhost
  and 127.0.0.1 issued by a throwaway demo CA in the temporary directory
  (bridge/idpsim/keys.py ``ensure_server_cert``); its listener then speaks TLS and
  plain HTTP on the one port, as in production (bridge/listeners.py ``SniffingSite``).
  The plain cases run without ``printer.tls``.
- The bridge unauthenticated is the printer application alone, on the production
  listener (``ListenerRunner``), with ``auth_required=False`` (a benchmark-only
  switch, not a configuration key); authenticated it is the whole demo (bridge +
  AD FS simulator in one process, alice's demo password: one WS-Trust call per
  job, cached for the rest).

Targets: issue 5: bridge >= 0.8 of ippeveprinter's throughput over plain IPP
unauthenticated, faster than ippeveprinter authenticated; issue 13: >= 0.8 over
TLS (``ipps``, ``ipps+auth``, ``ipps+gzip``); the bridge's RSS growth < 32 MB
while it takes the largest job, every case.

Run from the repository root: ``.venv/bin/python bench/ipp_ingest.py [--sizes 50,500] [--repeat 3]
[--cases ipps,ipps+gzip] [--create-pam-user]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import signal
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
PRINT_JOB_TEST = Path("/usr/share/cups/ipptool/print-job.test")
RSS_TARGET = 32 * MB
GZIP_TEST = """\
# Print-Job with the document deflated by ipptool as it is sent (written by bench/ipp_ingest.py)
{
\tNAME "Print file using Print-Job, compression gzip"
\tOPERATION Print-Job
\tGROUP operation-attributes-tag
\tATTR charset attributes-charset utf-8
\tATTR language attributes-natural-language en
\tATTR uri printer-uri $uri
\tATTR name requesting-user-name $user
\tATTR mimeMediaType document-format $filetype
\tATTR keyword compression gzip
\tCOMPRESSION gzip
\tFILE $filename
\tSTATUS successful-ok
\tSTATUS successful-ok-ignored-or-substituted-attributes
\tEXPECT job-id
\tEXPECT job-uri
}
"""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    tls: bool
    auth: bool
    gzip: bool = False
    largest_only: bool = False
    target: float = 0.8
    strict: bool = False  # the ratio must exceed the target (not only reach it)
    issue: int = 13

    @property
    def target_text(self) -> str:
        return f"{'>' if self.strict else '>='} {self.target:.2f}"

    def met(self, ratio: float) -> bool:
        return ratio > self.target if self.strict else ratio >= self.target


CASES = (
    Case("ipp", tls=False, auth=False, issue=5),
    Case("ipp+auth", tls=False, auth=True, target=1.0, strict=True, issue=5),
    Case("ipps", tls=True, auth=False),
    Case("ipps+auth", tls=True, auth=True),
    Case("ipps+gzip", tls=True, auth=False, gzip=True, largest_only=True),
)


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




def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """utime + stime of the waited-for children (here: the ipptool runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class Job:
    wall: float
    server_cpu: float
    client_cpu: float


def print_job(uri: str, document: Path, test: Path, workdir: Path, pid: int, log: Path) -> Job:
    """One chunked Print-Job with ipptool (HOME in the temporary directory); exits on failure.

    No ``-T`` (request timeout): with it, CUPS 2.4's ipptool fails every request to
    the bridge over TLS 1.3 (it takes the session tickets that OpenSSL sends after
    the handshake for an early answer, then sends again) while ippeveprinter
    (GnuTLS, no tickets) is not affected.  ipptool reconnects and sends again,
    without end, when a request fails that way: a deadline (a minute, plus a second
    per MB) ends that."""
    env = {**os.environ, "HOME": str(workdir / "home")}
    argv = ["ipptool", "-C", "-f", str(document), uri, str(test)]
    server0, client0 = cpu_seconds(pid), children_cpu()
    start = time.perf_counter()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, cwd=workdir, env=env,
                             timeout=60 + document.stat().st_size / MB)
    except subprocess.TimeoutExpired as exc:
        failure = f"no answer after {exc.timeout:.0f} s"
    else:
        if out.returncode == 0:
            return Job(time.perf_counter() - start, cpu_seconds(pid) - server0, children_cpu() - client0)
        failure = f"{out.stdout}{out.stderr}"
    tail = log.read_text(errors="replace").splitlines()[-30:]
    raise SystemExit(f"{test.name} failed against {uri.split('@')[-1]}: {failure}\n"
                     f"the end of {log.name}:\n" + "\n".join(tail))


def wait_files(directory: Path, count: int, within: float = 600) -> None:
    """The bridge delivers each job to the outbox; let that copy finish before the next job (disk)."""
    deadline = time.monotonic() + within
    while len(list(directory.glob("*.json"))) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{directory}: {count} deliveries not done")
        time.sleep(0.05)


def take_document(directory: Path, size: int) -> None:
    """The newest PDF in a spool or outbox has the document's size (so a gzip job was inflated); then
    every PDF and ippeveprinter's empty ``.prn`` outputs go, to spare the disk."""
    found = sorted((p for p in directory.glob("*.pdf") if p.is_file()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"{directory}: the job's document is not there")
    if (actual := found[-1].stat().st_size) != size:
        raise SystemExit(f"{found[-1]}: {actual} bytes, the document has {size}")
    for path in (*found, *directory.glob("*.prn")):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Bridge configurations


def bridge_config(root: Path, printer_port: int, *, sim_port: int | None, tls: tuple[Path, Path] | None) -> Path:
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True, exist_ok=True)
    printer: dict[str, object] = {"enabled": True, "host": "127.0.0.1", "port": printer_port, "max_job_mb": 1024,
                                  "delivery": {"outbox_dir": str(root / "outbox")}}
    if tls is not None:
        printer["tls"] = {"cert": str(tls[0]), "key": str(tls[1])}
    main = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "state_dir": str(root / "state"),
        "secrets": {"hmac_key": {"file": str(root / "state" / "hmac.key"), "generate": True}},
        "logging": {"level": "WARNING"},
        "printer": printer,
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    if sim_port is not None:
        tenant = yaml.safe_load((REPO / "conf" / "tenants" / "example.yaml").read_text())
        tenant["wstrust"]["adfs_url"] = f"https://127.0.0.1:{sim_port}"
        tenant["wstrust"]["ca_file"] = str(root / "state" / "idp-sim" / "ca.pem")
        (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant))
    return conf / "bridge.yaml"


def serve_printer(config_path: str) -> None:
    """``--serve-printer``: the printer application alone, without authentication (benchmark only), on the
    listener the bridge gives it (printers/server.py ``printer_listener``): TLS and plain HTTP with ``printer.tls``."""
    from aiohttp import web

    from bridge.config import load_config
    from bridge.listeners import ListenerRunner, SniffingSite, tls_server_context
    from printers.server import make_printer_app

    config = load_config(config_path, require_files=False)
    printer = config.printer
    assert printer is not None

    async def serve() -> None:
        runner = ListenerRunner(make_printer_app(config, auth_required=False), access_log=None,
                                header_timeout=config.listener_timeouts.header,
                                idle_timeout=config.listener_timeouts.idle)
        await runner.setup()
        site: web.BaseSite
        if printer.tls is None:
            site = web.TCPSite(runner, printer.host, printer.port)
        else:
            context = tls_server_context(printer.tls.cert, printer.tls.key)
            site = SniffingSite(runner, printer.host, printer.port, ssl_context=context)
        await site.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rss:
    baseline: int
    peak: int
    hwm: int

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass
class Results:
    jobs: dict[tuple[str, str, int], list[Job]] = field(default_factory=dict)
    """(case, printer, size) -> the runs."""
    rss: dict[str, Rss] = field(default_factory=dict)
    """case -> the bridge's worst RSS growth over the runs of the largest size."""
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    """(case, printer) -> why it was not measured."""
    load: list[float] = field(default_factory=list)
    """The 1-minute load average after each job."""

    def median(self, case: str, printer: str, size: int, what: str = "wall") -> float | None:
        runs = self.jobs.get((case, printer, size))
        return None if not runs else statistics.median(getattr(job, what) for job in runs)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a case's jobs go: a printer process, its URI, and where its documents land."""

    printer: str  # "ippeveprinter" or "bridge"
    uri: str
    pid: int
    landing: Path  # ippeveprinter's spool directory, or the bridge's outbox
    outbox: bool
    log: Path


def measure(case: Case, target: Target, docs: dict[int, Path], test: Path, workdir: Path, results: Results, *,
            largest: int, repeat: int) -> None:
    delivered = 0
    for size, document in docs.items():
        runs: list[Job] = []
        for _ in range(repeat):
            if target.printer == "bridge" and size == largest:
                with RssSampler(target.pid) as sampler:
                    job = print_job(target.uri, document, test, workdir, target.pid, target.log)
                sample = Rss(sampler.baseline, sampler.peak, sampler.read("VmHWM"))
                if case.name not in results.rss or sample.growth > results.rss[case.name].growth:
                    results.rss[case.name] = sample
            else:
                job = print_job(target.uri, document, test, workdir, target.pid, target.log)
            runs.append(job)
            results.load.append(os.getloadavg()[0])
            if target.outbox:
                delivered += 1
                wait_files(target.landing, delivered)
            else:
                time.sleep(0.5)  # ippeveprinter takes one job at a time
            take_document(target.landing, document.stat().st_size)
        results.jobs[(case.name, target.printer, size)] = runs
        wall = statistics.median(job.wall for job in runs)
        server = statistics.median(job.server_cpu for job in runs)
        client = statistics.median(job.client_cpu for job in runs)
        print(f"  {target.printer:<13} {size:>4} MB  median {wall:7.3f} s ({size / wall:6.1f} MB/s)"
              f"  cpu {server:6.2f} s  ipptool cpu {client:6.2f} s"
              f"  runs {' '.join(f'{job.wall:.3f}' for job in runs)}", flush=True)
    if target.printer == "bridge" and (rss := results.rss.get(case.name)) is not None:
        print(f"  bridge RSS {rss.baseline / MB:.1f} MB before the {largest} MB job, peak {rss.peak / MB:.1f} MB "
              f"(growth {rss.growth / MB:.1f} MB, the worst run), VmHWM {rss.hwm / MB:.1f} MB", flush=True)


@dataclass(frozen=True, slots=True)
class Setup:
    """What every case shares."""

    workdir: Path
    docs: dict[int, Path]
    gzip_test: Path
    bridge_tls: tuple[Path, Path]
    dbus_env: dict[str, str]
    account: tuple[str, str] | None
    repeat: int


def run_case(case: Case, setup: Setup, results: Results) -> None:
    workdir = setup.workdir
    largest = max(setup.docs)
    docs = {largest: setup.docs[largest]} if case.largest_only else setup.docs
    test = setup.gzip_test if case.gzip else PRINT_JOB_TEST
    scheme = "ipps" if case.tls else "ipp"
    print(f"{case.name}: {scheme}://, {'HTTP Basic' if case.auth else 'unauthenticated'}"
          f"{', compression gzip' if case.gzip else ''}", flush=True)

    if case.auth and setup.account is None:
        reason = "ippeveprinter -A needs a local PAM account: --pam-user NAME:PASSWORD or --create-pam-user"
        results.skipped[(case.name, "ippeveprinter")] = reason
        print(f"  ippeveprinter skipped: {reason}", flush=True)
    else:
        port, spool, keys = free_port(), workdir / "eve-spool", workdir / "eve-keys"
        spool.mkdir(exist_ok=True)
        keys.mkdir(exist_ok=True)  # ippeveprinter writes its certificate there, but does not create the directory
        argv = ["ippeveprinter", "-r", "off", "-c", "/bin/true", "-d", str(spool), "-f", "application/pdf",
                "-n", "localhost", "-p", str(port), "-K", str(keys)]
        creds = ""
        if case.auth:
            assert setup.account is not None
            user, password = setup.account
            argv.append("-A")
            creds = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        log = workdir / f"eve-{case.name}.log"
        with running([*argv, "BenchEveAuth" if case.auth else "BenchEve"], port, log, setup.dbus_env) as pid:
            uri = f"{scheme}://{creds}127.0.0.1:{port}/ipp/print"
            measure(case, Target("ippeveprinter", uri, pid, spool, False, log), docs, test, workdir, results,
                    largest=largest, repeat=setup.repeat)

    root = workdir / f"bridge-{case.name.replace('+', '-')}"
    port = free_port()
    sim_port = free_port() if case.auth else None
    config = bridge_config(root, port, sim_port=sim_port, tls=setup.bridge_tls if case.tls else None)
    if sim_port is None:
        argv = [PYTHON, str(Path(__file__).resolve()), "--serve-printer", str(config)]
        creds = ""
    else:  # the demo: bridge + AD FS simulator
        argv = [PYTHON, "-m", "bridge", "demo", "--config", str(config), "--sim-port", str(sim_port),
                "--seed-dir", str(REPO / "conf" / "demo"), "--sim-users", str(REPO / "conf" / "idp-sim" / "users.yaml")]
        creds = f"{quote(ALICE[0], safe='')}:{quote(ALICE[1], safe='')}@"
    log = workdir / f"{root.name}.log"
    with running(argv, port, log) as pid:
        uri = f"{scheme}://{creds}127.0.0.1:{port}/ipp/print"
        measure(case, Target("bridge", uri, pid, root / "outbox", True, log), docs, test, workdir, results,
                largest=largest, repeat=setup.repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="50,500", help="document sizes in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is reported")
    parser.add_argument("--cases", default=",".join(case.name for case in CASES),
                        help=f"comma-separated, from {', '.join(case.name for case in CASES)} (default: all)")
    parser.add_argument("--pam-user", help="NAME:PASSWORD of a local account for authenticated ippeveprinter")
    parser.add_argument("--create-pam-user", action="store_true", help="add (and remove) a temporary account")
    parser.add_argument("--serve-printer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_printer:
        serve_printer(args.serve_printer)
        return
    # SIGTERM (timeout, kill) as an exception: the temporary account, the processes and the files still go.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for tool in ("ipptool", "ippeveprinter", "dbus-daemon"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install cups-ipp-utils dbus)")
    by_name = {case.name: case for case in CASES}
    if unknown := [name for name in args.cases.split(",") if name not in by_name]:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    cases = [by_name[name] for name in args.cases.split(",")]
    sizes = sorted(int(s) for s in args.sizes.split(","))

    from bridge.idpsim.keys import ensure_server_cert

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="ipp-ingest-"))
    results = Results()
    try:
        (workdir / "home").mkdir()
        gzip_test = workdir / "print-job-gzip.test"
        gzip_test.write_text(GZIP_TEST)
        bridge_tls = ensure_server_cert(workdir / "pki", "printer.pem", "printer.key", ("localhost", "127.0.0.1"))
        docs = {}
        for size in sizes:
            docs[size] = workdir / f"doc-{size}mb.pdf"
            write_pdf(docs[size], size * MB)
        print(f"documents: {', '.join(f'{s} MB' for s in sizes)} in {workdir}", flush=True)
        with private_dbus(workdir) as env, pam_user(args.pam_user, args.create_pam_user) as account:
            setup = Setup(workdir=workdir, docs=docs, gzip_test=gzip_test, bridge_tls=bridge_tls, dbus_env=env,
                          account=account, repeat=args.repeat)
            for case in cases:
                run_case(case, setup, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, cases, sizes, load_before, os.getloadavg())


def _loads(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _seconds(value: float | None) -> str:
    return f"{value:8.3f} s" if value is not None else f"{'n/a':>10}"


def report(results: Results, cases: list[Case], sizes: list[int], load_before: tuple[float, float, float],
           load_after: tuple[float, float, float]) -> None:
    largest = max(sizes)
    during = f"1 min after each job {min(results.load):.2f}-{max(results.load):.2f}, " if results.load else ""
    print(f"\nsummary  (load average 1/5/15 min {_loads(load_before)} at the start; {during}"
          f"1/5/15 min {_loads(load_after)} at the end)")
    print(f"{'case':<10} {'size':>6}  {'ippeve':>10} {'bridge':>10} {'ratio':>6}  {'target':<8} {'result':<6}"
          f"  {'cpu/job: ippeve':>15} {'bridge':>7}")
    for case in cases:
        for size in [largest] if case.largest_only else sizes:
            eve, bridge = results.median(case.name, "ippeveprinter", size), results.median(case.name, "bridge", size)
            eve_cpu = results.median(case.name, "ippeveprinter", size, "server_cpu")
            bridge_cpu = results.median(case.name, "bridge", size, "server_cpu")
            ratio = f"{eve / bridge:6.2f}" if eve is not None and bridge is not None else f"{'n/a':>6}"
            if eve is not None and bridge is not None:
                result = "PASS" if case.met(eve / bridge) else "MISS"
            else:
                result = "SKIP" if (case.name, "ippeveprinter") in results.skipped else "n/a"
            cpu = (f"{eve_cpu:13.2f} s" if eve_cpu is not None else f"{'n/a':>15}") + (
                f" {bridge_cpu:5.2f} s" if bridge_cpu is not None else f" {'n/a':>7}")
            print(f"{case.name:<10} {size:>3} MB  {_seconds(eve)} {_seconds(bridge)} {ratio}  "
                  f"{case.target_text:<8} {result:<6}  {cpu}")
    for case in cases:
        if (rss := results.rss.get(case.name)) is not None:
            result = "PASS" if rss.growth < RSS_TARGET else "MISS"
            print(f"{case.name:<10} {largest:>3} MB  bridge RSS growth {rss.growth / MB:6.1f} MB  "
                  f"{'< ' + str(RSS_TARGET // MB) + ' MB':<8} {result:<6}  (VmHWM {rss.hwm / MB:.1f} MB)")
    print("(ratio = ippeveprinter time / bridge time = the bridge's throughput relative to ippeveprinter's; "
          "targets: ipp and ipp+auth issue 5, the ipps cases and RSS issue 13)")
    for (case_name, printer), reason in results.skipped.items():
        print(f"SKIP {case_name} {printer}: {reason}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
