"""Running the simulator over TLS: ``async with run_simulator(...) as sim`` for tests and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bridge.idpsim.app import FEDMETA_PATH, MEX_PATH, SIM_SIGNING, make_app
from bridge.idpsim.config import SimConfig
from bridge.idpsim.keys import SimKeys, ensure_keys, server_ssl_context
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.state import SIM_STATE, SimState


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningSimulator:
    """A started simulator: where it listens and what a client must trust."""

    host: str
    port: int
    base_url: str
    ca_file: Path
    signing_cert_pem: bytes
    issuer: str
    state: SimState
    config: SimConfig
    keys: SimKeys

    @property
    def mex_url(self) -> str:
        return self.base_url + MEX_PATH

    @property
    def metadata_url(self) -> str:
        return self.base_url + FEDMETA_PATH

    def endpoint(self, version: TrustVersion) -> str:
        return self.base_url + version.mixed_path


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimConfig, keys_dir: Path, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator over https on ``host:port`` (0: any free port) until the block exits."""
    keys = await asyncio.to_thread(ensure_keys, keys_dir, host=host)
    sock = _bind(host, port)
    bound_port = int(sock.getsockname()[1])
    resolved = config.resolved(host, bound_port)
    app = make_app(resolved, keys_dir=keys_dir, keys=keys)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=server_ssl_context(keys))
        await site.start()
        shown = f"[{host}]" if ":" in host else host
        yield RunningSimulator(
            host=host,
            port=bound_port,
            base_url=f"https://{shown}:{bound_port}",
            ca_file=keys.ca_file,
            signing_cert_pem=app[SIM_SIGNING].cert_pem,
            issuer=resolved.issuer or "",
            state=app[SIM_STATE],
            config=resolved,
            keys=keys,
        )
    finally:
        await runner.cleanup()
        sock.close()
