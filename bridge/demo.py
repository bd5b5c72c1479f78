"""`loginbridge demo`: the bridge on conf/ with the built-in IdP simulator.

One process serves both, simulator first (the demo tenant trusts the
simulator's CA and takes its signing certificate from its metadata), then
seeds the demo directory (users from ``conf/demo/users-<tenant>.csv`` and the
demo devices below) and serves the device API until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bridge.app import make_app, make_runner
from bridge.config import BridgeConfig, load_config
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.server import run_simulator
from bridge.logcontext import setup_logging
from bridge.state.store import DeviceMode, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoDevice:
    tenant_id: str
    device_id: str
    secret: str
    name: str
    mode: DeviceMode
    shared_user: str | None = None


# Demo credentials, documented in the README; a real deployment enrols devices
# with `loginbridge devices add`, which generates the secret.
DEMO_DEVICES = (
    DemoDevice(
        tenant_id="example", device_id="demo-mfp", secret="demo-mfp-secret",  # noqa: S106
        name="Demo MFP (user prompt)", mode=DeviceMode.USER_PROMPT,
    ),
    DemoDevice(
        tenant_id="example-org", device_id="demo-mfp-org", secret="demo-mfp-org-secret",  # noqa: S106
        name="Demo MFP example.org (user prompt)", mode=DeviceMode.USER_PROMPT,
    ),
    DemoDevice(
        tenant_id="example", device_id="demo-lobby", secret="demo-lobby-secret",  # noqa: S106
        name="Demo lobby MFP (shared account)", mode=DeviceMode.SHARED_ACCOUNT,
        shared_user="frontdesk@example.com",
    ),
    DemoDevice(
        tenant_id="example", device_id="demo-badge", secret="demo-badge-secret",  # noqa: S106
        name="Demo badge-reader MFP (device login)", mode=DeviceMode.DEVICE_LOGIN,
    ),
)
DEMO_DISABLED_USERS = (("example", "disabled@example.com"),)


async def seed(config: BridgeConfig, store: Store, seed_dir: Path) -> None:
    """Idempotently load the demo users and devices."""
    for tenant in config.tenants:
        csv_file = seed_dir / f"users-{tenant.id}.csv"
        if csv_file.is_file():
            await store.import_users_csv(tenant, csv_file, skip_invalid=True)  # existing rows are skipped
    for tenant_id, email in DEMO_DISABLED_USERS:
        user = await store.get_user(tenant_id, email)
        if user is not None and user.enabled:
            await store.disable_user(tenant_id, email)
    known = {t.id for t in config.tenants}
    for device in DEMO_DEVICES:
        if device.tenant_id in known and await store.get_device(device.device_id) is None:
            await store.add_device(
                device.tenant_id,
                name=device.name,
                mode=device.mode,
                shared_user_email=device.shared_user,
                device_id=device.device_id,
                secret=device.secret,
            )


def _instructions(config: BridgeConfig, sim_url: str) -> str:
    api = f"http://{config.listen_host}:{config.listen_port}"
    return (
        f"\nloginbridge demo is up.\n"
        f"  device API      {api}\n"
        f"  AD FS simulator {sim_url}  (MEX {sim_url}/adfs/services/trust/mex)\n\n"
        f"Log alice in from the user-prompt MFP 'demo-mfp':\n"
        f"  curl -s -u demo-mfp:demo-mfp-secret -H 'Content-Type: application/json' \\\n"
        f"       -d '{{\"email\": \"alice@example.com\", \"password\": \"alice-demo-pass\"}}' \\\n"
        f"       {api}/v1/mfp/user-prompt\n"
        f"A wrong password gets 401 invalid_credentials; \"email\": \"alice\" gets 400 email_required.\n"
        f"Other modes: shared account (lobby MFP acting as frontdesk@example.com), device login (badge reader):\n"
        f"  curl -s -u demo-lobby:demo-lobby-secret -X POST {api}/v1/mfp/shared-account\n"
        f"  curl -s -u demo-badge:demo-badge-secret -H 'Content-Type: application/json' \\\n"
        f"       -d '{{\"user\": \"alice@example.com\"}}' {api}/v1/mfp/device-login\n"
        f"Apps (no device credential): POST {api}/v1/apps/login with the same JSON as the user prompt.\n"
        f"Metrics: {api}/metrics   API description: {api}/v1/openapi.json\n"
        + _printer_instructions(config)
        + "Ctrl-C stops both.\n"
    )


def _printer_instructions(config: BridgeConfig) -> str:
    printer = config.printer
    if printer is None or not printer.enabled:
        return ""
    outbox = printer.delivery.outbox_dir or printer.delivery.url
    return (
        f"Print-to-Web printer ipp://{printer.host}:{printer.port}/ipp/print (alice and bob print with their\n"
        f"demo passwords; delivered jobs land in {outbox}):\n"
        f"  ipptool -tv -f FILE.pdf 'ipp://alice%40example.com:alice-demo-pass@{printer.host}:{printer.port}"
        f"/ipp/print' print-job.test\n"
    )


async def serve_demo(config_path: Path, sim_users: Path, seed_dir: Path, sim_port: int) -> None:
    preliminary = load_config(config_path, require_files=False)
    setup_logging(preliminary.log_level)
    sim_config = load_sim_config(sim_users)
    async with run_simulator(sim_config, preliminary.state_dir / "idp-sim", host="127.0.0.1", port=sim_port) as sim:
        config = load_config(config_path)  # now the simulator's CA exists: full validation
        for warning in config.warnings:
            log.warning("%s", warning)
        async with await Store.open(config.store_url) as store:
            await seed(config, store, seed_dir)
        runner = make_runner(make_app(config), config)
        await runner.setup()
        site = web.TCPSite(runner, config.listen_host, config.listen_port)
        await site.start()
        print(_instructions(config, sim.base_url), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loginbridge demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/bridge.yaml", type=Path)
    parser.add_argument("--sim-users", default="conf/idp-sim/users.yaml", type=Path)
    parser.add_argument("--seed-dir", default="conf/demo", type=Path)
    parser.add_argument("--sim-port", default=9443, type=int)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve_demo(args.config, args.sim_users, args.seed_dir, args.sim_port))
    except KeyboardInterrupt:
        pass
    return 0
