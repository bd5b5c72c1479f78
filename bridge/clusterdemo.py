"""`loginbridge cluster-demo`: the demo as a cluster, three instances on one PostgreSQL behind HAProxy.

Everything on loopback and thrown away at the end: a PostgreSQL started from the system's binaries in
a temp dir (:mod:`bridge.localservers.postgres`), the IdP simulator in this process (as ``loginbridge
demo`` runs it, on the port the demo tenants name), the store seeded as the demo seeds it, three
``loginbridge serve`` processes on one configuration (``--port`` and ``--printer-port`` give each its
own ports, ``LOGINBRIDGE_STORE_URL`` points them at the database) and HAProxy in front of their device
API (round robin, health checks on ``/readyz``) on the configuration's ``listen.port``. SIGINT or
SIGTERM stops it all (HAProxy, the instances, PostgreSQL, the simulator) and removes the temp dirs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from bridge.config import STORE_URL_ENV, BridgeConfig, load_config
from bridge.demo import seed
from bridge.errors import ConfigError
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.localservers.haproxy import HAProxy, HAProxyError, run_haproxy
from bridge.localservers.postgres import PostgresError, PostgresServer, run_postgres
from bridge.logcontext import setup_logging
from bridge.state.store import Store

INSTANCES = 3
HOST = "127.0.0.1"
DATABASE = "loginbridge"
READY_WITHIN = 60.0  # seconds for one instance to answer /readyz (it migrates nothing: the launcher did)
STOP_WITHIN = 15.0  # seconds for one instance to stop on SIGTERM before it is killed


class ClusterDemoError(Exception):
    """The cluster demo cannot start (a port taken, an instance that does not come up)."""


@dataclass
class Instance:
    name: str
    port: int
    printer_port: int | None
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True)
class Options:
    config: Path
    sim_users: Path
    seed_dir: Path
    sim_port: int
    port: int | None
    instance_ports: tuple[int, ...] | None
    printer_ports: tuple[int, ...] | None


# -- ports -------------------------------------------------------------------------------------------------


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _check_ports(wanted: Sequence[tuple[str, str, int]]) -> None:
    """Each (what, option that changes it, port): distinct and free, else one clear error."""
    seen: dict[int, str] = {}
    for what, option, port in wanted:
        if port in seen:
            raise ClusterDemoError(f"port {port} is wanted twice ({seen[port]} and {what}): change it with {option}")
        seen[port] = what
        if port_in_use(port):
            raise ClusterDemoError(
                f"{HOST}:{port} ({what}) is already in use; is `make demo` or another cluster demo running? "
                f"Stop it, or choose another port with {option}")


# -- the instances -----------------------------------------------------------------------------------------


def _start_instance(instance: Instance, config: BridgeConfig, store_url: str) -> None:
    cmd = [sys.executable, "-m", "bridge", "serve", "--config", str(config.source), "--port", str(instance.port)]
    if instance.printer_port is not None:
        cmd += ["--printer-port", str(instance.printer_port)]
    env = {**os.environ, STORE_URL_ENV: store_url, "PYTHONUNBUFFERED": "1"}
    instance._log = open(instance.log_file, "ab")  # closed when the instance is stopped
    # Its own session: a Ctrl-C at the terminal reaches the launcher only, which stops everything in order.
    instance.process = subprocess.Popen(  # noqa: S603 (this Python, our own arguments)
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=instance._log, stderr=subprocess.STDOUT,
        start_new_session=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- {path} ---\n" + "\n".join(text)


async def _wait_ready(instance: Instance, within: float = READY_WITHIN) -> None:
    assert instance.process is not None
    deadline = time.monotonic() + within
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(instance.url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            if instance.process.poll() is not None:
                raise ClusterDemoError(f"instance {instance.name} exited with status {instance.process.returncode}"
                                       + _tail(instance.log_file))
            if time.monotonic() > deadline:
                raise ClusterDemoError(f"instance {instance.name} not ready within {within:.0f} s"
                                       + _tail(instance.log_file))
            await asyncio.sleep(0.2)


def _stop_instances(instances: Sequence[Instance]) -> None:
    """SIGTERM to every instance (a clean stop), then wait; SIGKILL what is still running after STOP_WITHIN."""
    running = [i.process for i in instances if i.process is not None and i.process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WITHIN
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for instance in instances:
        if instance._log is not None:
            instance._log.close()


# -- what runs where ---------------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as the README writes it)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def instructions(*, lb: HAProxy, instances: Sequence[Instance], pg: PostgresServer, store_url: str,
                 sim: RunningSimulator, workdir: Path) -> str:
    api = lb.url
    prompt = "curl -s -u demo-mfp:demo-mfp-secret -H 'Content-Type: application/json'"
    lines = [
        "",
        f"loginbridge cluster demo is up ({len(instances)} instances, one PostgreSQL, HAProxy in front).",
        f"  device API      {api}  (HAProxy pid {lb.process.pid}: round robin, health checks GET /readyz;"
        " answers carry X-Served-By)",
    ]
    for instance in instances:
        assert instance.process is not None
        printer = "" if instance.printer_port is None else f"  printer ipp://{HOST}:{instance.printer_port}/ipp/print"
        lines.append(f"  instance {instance.name}     {instance.url}{printer}  (pid {instance.process.pid},"
                     f" log {instance.log_file})")
    lines += [
        f"  PostgreSQL      {store_url}  (postmaster pid {pg.pid()}, data in {pg.base_dir})",
        f"  AD FS simulator {sim.base_url}  (counters: {sim.base_url}/_sim/stats)",
        f"  temp dirs       {pg.base_dir} {lb.base_dir} {workdir}  (removed when the demo stops)",
        "",
        "Log alice in through HAProxy:",
        f"  {prompt} \\",
        "       -d '{\"email\": \"alice@example.com\", \"password\": \"alice-demo-pass\"}' \\",
        f"       {api}/v1/mfp/user-prompt; echo",
        "Six wrong passwords for alice, spread over the instances: five reach the IdP (401), the sixth is 429:",
        "  for n in 1 2 3 4 5 6; do",
        f"    {prompt} \\",
        "         -d \"{\\\"email\\\": \\\"alice@example.com\\\", \\\"password\\\": \\\"wrong-$n\\\"}\" \\",
        f"         -w ' -> %{{http_code}} from %header{{x-served-by}}\\n' {api}/v1/mfp/user-prompt",
        "  done",
        "How many passwords reached the IdP (the simulator's WS-Trust counters, trust13/trust2005):",
        f"  curl -s --cacert {_shown(sim.ca_file)} {sim.base_url}/_sim/stats",
        "Every attempt, with the instance-independent result (the audit trail in PostgreSQL):",
        f"  {STORE_URL_ENV}='{store_url}' \\\n    .venv/bin/loginbridge audit tail --tenant example",
        "Ctrl-C (or SIGTERM) stops everything and removes the temp dirs.",
        "",
    ]
    return "\n".join(lines)


# -- the whole run -----------------------------------------------------------------------------------------


def _ports(opts: Options, config: BridgeConfig) -> tuple[int, list[Instance], Path]:
    frontend = config.listen_port if opts.port is None else opts.port
    api_ports = list(opts.instance_ports or [frontend + 1 + n for n in range(INSTANCES)])
    printer = config.printer if config.printer is not None and config.printer.enabled else None
    printer_ports: list[int | None] = [None] * len(api_ports)
    if printer is not None:
        printer_ports = list(opts.printer_ports or [printer.port + 1 + n for n in range(len(api_ports))])
    if len(printer_ports) != len(api_ports):
        raise ClusterDemoError(f"--printer-ports names {len(printer_ports)} ports for {len(api_ports)} instances")
    wanted = [("the device API through HAProxy", "--port", frontend),
              ("the IdP simulator", "--sim-port (and the tenant files' IdP URLs)", opts.sim_port)]
    for n, (api_port, printer_port) in enumerate(zip(api_ports, printer_ports, strict=True), 1):
        wanted.append((f"instance i{n}", "--instance-ports", api_port))
        if printer_port is not None:
            wanted.append((f"instance i{n}'s printer", "--printer-ports", printer_port))
    _check_ports(wanted)
    workdir = Path(tempfile.mkdtemp(prefix="lb-cluster-demo-"))
    instances = [Instance(name=f"i{n}", port=api_port, printer_port=printer_port,
                          log_file=workdir / f"instance-i{n}.log")
                 for n, (api_port, printer_port) in enumerate(zip(api_ports, printer_ports, strict=True), 1)]
    return frontend, instances, workdir


async def run_cluster_demo(opts: Options) -> None:
    preliminary = load_config(opts.config, require_files=False)
    setup_logging(preliminary.log_level)
    sim_config = load_sim_config(opts.sim_users)
    frontend, instances, workdir = _ports(opts, preliminary)
    async with contextlib.AsyncExitStack() as stack:
        # Undone in reverse: HAProxy, the instances, PostgreSQL, the simulator, the launcher's temp dir.
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        sim = await stack.enter_async_context(
            run_simulator(sim_config, preliminary.state_dir / "idp-sim", host=HOST, port=opts.sim_port))
        config = load_config(opts.config)  # now the simulator's CA exists: full validation
        pg = stack.enter_context(run_postgres())
        store_url = pg.create_database(DATABASE).url
        async with await Store.open(store_url) as store:  # migrated here, once
            await seed(config, store, opts.seed_dir)
        stack.push_async_callback(asyncio.to_thread, _stop_instances, instances)
        for index, instance in enumerate(instances):
            _start_instance(instance, config, store_url)
            if index == 0:  # the first one alone: it creates the SP key pair the others then read
                await _wait_ready(instance)
        for instance in instances[1:]:
            await _wait_ready(instance)
        lb = stack.enter_context(run_haproxy(
            {i.name: i.port for i in instances}, port=frontend,
            extra_backend=["http-response set-header X-Served-By %s"]))
        await lb.wait_until_up_async(len(instances), within=20)
        print(instructions(lb=lb, instances=instances, pg=pg, store_url=store_url, sim=sim, workdir=workdir),
              flush=True)
        await asyncio.Event().wait()


async def _until_signalled(opts: Options) -> None:
    """Run the demo; SIGTERM (and SIGINT, unless ignored) cancels it, which unwinds everything it started."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:  # a second signal must not cut the clean-up short
            stopping = True
            print("\nstopping the cluster demo ...", file=sys.stderr, flush=True)
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            loop.add_signal_handler(signum, stop)
    try:
        await run_cluster_demo(opts)
    except asyncio.CancelledError:
        if not stopping:
            raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if stopping:
        print("cluster demo stopped; its temp dirs are removed.", file=sys.stderr, flush=True)


def _port_list(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text!r}") from None
    if not ports or any(not 1 <= port <= 65535 for port in ports):
        raise argparse.ArgumentTypeError(f"ports are 1-65535: {text!r}")
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loginbridge cluster-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/bridge.yaml", type=Path)
    parser.add_argument("--sim-users", default="conf/idp-sim/users.yaml", type=Path)
    parser.add_argument("--seed-dir", default="conf/demo", type=Path)
    parser.add_argument("--sim-port", default=9443, type=int, help="the IdP simulator (the demo tenants name 9443)")
    parser.add_argument("--port", type=int, help="HAProxy's device API port (default: listen.port, 8080)")
    parser.add_argument("--instance-ports", type=_port_list, metavar="P1,P2,P3",
                        help="the instances' device API ports (default: the next three after --port)")
    parser.add_argument("--printer-ports", type=_port_list, metavar="P1,P2,P3",
                        help="the instances' printer ports (default: the three after printer.port)")
    args = parser.parse_args(argv)
    opts = Options(config=args.config, sim_users=args.sim_users, seed_dir=args.seed_dir, sim_port=args.sim_port,
                   port=args.port, instance_ports=args.instance_ports, printer_ports=args.printer_ports)
    try:
        asyncio.run(_until_signalled(opts))
    except (ClusterDemoError, PostgresError, HAProxyError) as exc:
        print(f"cluster-demo: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
