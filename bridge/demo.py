"""`loginbridge demo`: the bridge on conf/ with the built-in IdP simulator.

One process serves both, simulator first (the demo tenant trusts the
simulator's CA and takes its signing certificate from its metadata), then
seeds the demo directory (users from ``conf/demo/users-<tenant>.csv`` and the
demo devices below) and serves the device API, the console and the printer
until SIGINT or SIGTERM.

``--api-port``, ``--printer-port`` and ``--sim-port`` move the three listeners.
The demo tenants name the simulator by a loopback ``https://127.0.0.1:PORT``
URL. The files in ``conf/tenants`` are templates: with another ``--sim-port``
the bridge reads copies of them with those URLs on the new port (written to
``<state_dir>/demo-tenants``); the files in ``conf/`` are never changed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import io
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from aiohttp import web
from cryptography.utils import CryptographyDeprecationWarning

from bridge.config import BridgeConfig, Saml2Config, TenantConfig, WsTrustConfig, load_config, tenant_files
from bridge.idpsim.config import SimConfig
from bridge.idpsim.keys import SimKeys
from bridge.logcontext import setup_logging
from bridge.state.store import DeviceMode, Store

log = logging.getLogger(__name__)

DEFAULT_SIM_PORT = 9443  # when no tenant names the simulator
SIM_HOST = "127.0.0.1"
DEMO_TENANTS_DIR = "demo-tenants"  # in the state directory: the tenant files with the simulator moved
_STR_TAG = "tag:yaml.org,2002:str"
# The console's demo user (conf/bridge.yaml holds only its scrypt hash); documented in the README.
DEMO_CONSOLE_USER = ("tech", "tech-demo-pass")


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoDevice:
    tenant_id: str
    device_id: str
    secret: str
    name: str
    mode: DeviceMode
    shared_user: str | None = None
    location: str = ""  # shown on the phone before a pairing at the device is approved


# Demo credentials, documented in the README; a real deployment enrols devices
# with `loginbridge devices add`, which generates the secret.
DEMO_DEVICES = (
    DemoDevice(
        tenant_id="example", device_id="demo-mfp", secret="demo-mfp-secret",  # noqa: S106
        name="Demo MFP (user prompt)", mode=DeviceMode.USER_PROMPT, location="2nd floor print room",
    ),
    DemoDevice(
        tenant_id="example-org", device_id="demo-mfp-org", secret="demo-mfp-org-secret",  # noqa: S106
        name="Demo MFP example.org (user prompt)", mode=DeviceMode.USER_PROMPT, location="Building B, 1st floor",
    ),
    DemoDevice(
        tenant_id="example-net", device_id="demo-mfp-net", secret="demo-mfp-net-secret",  # noqa: S106
        name="Demo MFP example.net (user prompt)", mode=DeviceMode.USER_PROMPT, location="Annex, copy corner",
    ),
    DemoDevice(
        tenant_id="example", device_id="demo-lobby", secret="demo-lobby-secret",  # noqa: S106
        name="Demo lobby MFP (shared account)", mode=DeviceMode.SHARED_ACCOUNT,
        shared_user="frontdesk@example.com", location="Reception, ground floor",
    ),
    DemoDevice(
        tenant_id="example", device_id="demo-badge", secret="demo-badge-secret",  # noqa: S106
        name="Demo badge-reader MFP (device login)", mode=DeviceMode.DEVICE_LOGIN,
        location="3rd floor, next to the kitchen",
    ),
)
DEMO_DISABLED_USERS = (("example", "disabled@example.com"),)


async def _seed_users(store: Store, tenant: TenantConfig, csv_file: Path) -> None:
    """Import the rows whose user is not in the store yet; say which were already present."""
    text = await asyncio.to_thread(csv_file.read_text, encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    missing = [row for row in rows if await store.get_user(tenant.id, row.get("email") or "") is None]
    present = len(rows) - len(missing)
    if not missing:  # a re-run on an existing state: nothing to import (the store would call them refused)
        log.info("demo users of tenant %s: all %s already present", tenant.id, present)
        return
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or []), lineterminator="\n")
    writer.writeheader()
    writer.writerows(missing)
    report = await store.import_users_csv(tenant, out.getvalue(), skip_invalid=True)
    if present:
        log.info("demo users of tenant %s: %s already present, %s imported", tenant.id, present,
                 len(report.imported))
    for error in report.errors:
        log.warning("%s: %s", csv_file, error.reason)


async def seed(config: BridgeConfig, store: Store, seed_dir: Path) -> None:
    """Idempotently load the demo users and devices (a second run finds them already present)."""
    for tenant in config.tenants:
        csv_file = seed_dir / f"users-{tenant.id}.csv"
        if csv_file.is_file():
            await _seed_users(store, tenant, csv_file)
    for tenant_id, email in DEMO_DISABLED_USERS:
        user = await store.get_user(tenant_id, email)
        if user is not None and user.enabled:
            await store.disable_user(tenant_id, email)
    known = {t.id for t in config.tenants}
    present = []
    for device in DEMO_DEVICES:
        if device.tenant_id not in known:
            continue
        existing = await store.get_device(device.device_id)
        if existing is not None:
            present.append(device.device_id)
            if not existing.location and device.location:  # a state from before devices had a location
                await store.update_device(device.device_id, location=device.location)
            continue
        await store.add_device(
            device.tenant_id,
            name=device.name,
            mode=device.mode,
            shared_user_email=device.shared_user,
            device_id=device.device_id,
            secret=device.secret,
            location=device.location,
        )
    if present:
        log.info("demo devices already present: %s", ", ".join(present))


# --------------------------------------------------------------------------
# Ports: the device API (and console), the printer, the simulator.


def _is_loopback(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tenant_urls(tenant: TenantConfig) -> list[str | None]:
    if tenant.wstrust is not None:
        return [tenant.wstrust.adfs_url, tenant.wstrust.endpoint]
    if tenant.saml2 is not None:
        return [tenant.saml2.metadata_url, tenant.saml2.ecp_url, tenant.saml2.entity_id]
    if tenant.oidc is not None:
        return [tenant.oidc.issuer]
    return []


def named_sim_port(config: BridgeConfig) -> int | None:
    """The port the tenants' loopback IdP URLs name (the simulator's, in the demo configuration)."""
    for tenant in config.tenants:
        for url in _tenant_urls(tenant):
            if url is not None and _is_loopback(url):
                return urlsplit(url).port or 443
    return None


def _moved(url: str | None, port: int) -> str | None:
    """A loopback URL with its port replaced; any other URL (a real IdP) unchanged."""
    if url is None or not _is_loopback(url):
        return url
    parts = urlsplit(url)
    host = parts.hostname or SIM_HOST
    shown = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=f"{shown}:{port}").geturl()


def move_simulator(config: BridgeConfig, port: int) -> BridgeConfig:
    """The configuration with every tenant's loopback IdP URL on ``port`` (the files stay as they are)."""
    tenants: list[TenantConfig] = []
    for tenant in config.tenants:
        wstrust: WsTrustConfig | None = tenant.wstrust
        saml2: Saml2Config | None = tenant.saml2
        if wstrust is not None:
            wstrust = dataclasses.replace(wstrust, adfs_url=_moved(wstrust.adfs_url, port),
                                          endpoint=_moved(wstrust.endpoint, port))
        if saml2 is not None:
            saml2 = dataclasses.replace(saml2, metadata_url=_moved(saml2.metadata_url, port),
                                        ecp_url=_moved(saml2.ecp_url, port), entity_id=_moved(saml2.entity_id, port))
        oidc = tenant.oidc
        if oidc is not None:
            oidc = dataclasses.replace(oidc, issuer=_moved(oidc.issuer, port) or oidc.issuer)
        tenants.append(dataclasses.replace(tenant, wstrust=wstrust, saml2=saml2, oidc=oidc))
    return dataclasses.replace(config, tenants=tuple(tenants))


def _value_scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    """The scalar values of a YAML document (not its keys)."""
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _value_scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for _, value in node.value:
            yield from _value_scalars(value)


def retarget_tenant_text(text: str, base_dir: Path, sim_port: int) -> str:
    """A tenant file's text with its loopback IdP URLs on ``sim_port`` and its relative paths absolute.

    The edits are made in place (the comments stay), so the text can be read from any directory.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    edits: list[tuple[int, int, str]] = []
    for node in [] if root is None else _value_scalars(root):
        value = node.value
        if node.tag != _STR_TAG or not value:
            continue
        new: str | None = None
        if "://" in value:
            moved = _moved(value, sim_port)
            new = moved if moved != value else None
        elif value.startswith(("./", "../")) or ("/" in value and (base_dir / value).exists()):
            new = os.path.normpath(base_dir / Path(value).expanduser())
        if new is not None:
            edits.append((node.start_mark.index, node.end_mark.index, json.dumps(new)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def write_demo_tenants(config: BridgeConfig, sim_port: int, target: Path) -> Path:
    """The tenant files (the templates) with the simulator on ``sim_port``, written to ``target``.

    The running bridge reads its tenants from the files of ``tenants_dir`` into the store
    (bridge/login/tenants.py), so moving the simulator means other files: these, not the templates.
    """
    wanted: dict[str, str] = {}
    for file in tenant_files(config.tenants_dir):
        wanted[file.name] = retarget_tenant_text(file.read_text(encoding="utf-8-sig"), file.parent, sim_port)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in target.glob("*.yaml"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        file = target / name
        if not file.is_file() or file.read_text(encoding="utf-8") != text:
            file.write_text(text, encoding="utf-8")
    return target


def with_demo_ports(config: BridgeConfig, *, api_port: int | None, printer_port: int | None) -> BridgeConfig:
    """``--api-port``/``--printer-port``; a public_url that named the old API port follows it."""
    from bridge.app import with_ports  # not at the top: after quiet_third_party_warnings (main)

    moved = with_ports(config, port=api_port, printer_port=printer_port)
    if api_port is not None and config.public_url == f"http://{config.listen_host}:{config.listen_port}":
        moved = dataclasses.replace(moved, public_url=f"http://{config.listen_host}:{api_port}")
    return moved


class DemoError(Exception):
    """The demo cannot start (a port taken or wanted twice)."""


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from a previous run is fine
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(wanted: Sequence[tuple[str, str, str, int]]) -> None:
    """Each (what, option that moves it, host, port): distinct and free, else one clear error."""
    seen: dict[int, str] = {}
    for what, option, host, port in wanted:
        if port == 0:
            continue
        if port in seen:
            raise DemoError(f"port {port} is wanted twice ({seen[port]} and {what}): change one with {option}")
        seen[port] = what
        if _port_in_use(host, port):
            raise DemoError(f"{host}:{port} ({what}) is already in use; is another demo running? "
                            f"Stop it, or choose another port with {option}")


# --------------------------------------------------------------------------
# The banner.


def _instructions(config: BridgeConfig, sim_url: str, ca_file: Path | None = None) -> str:
    api = f"http://{config.listen_host}:{config.listen_port}"
    return (
        f"\nloginbridge demo is up.\n"
        f"  device API      {api}\n"
        + _console_line(config, api)
        + _printer_line(config, ca_file)
        + f"  IdP simulator   {sim_url}\n"
        f"                  AD FS MEX       {sim_url}/adfs/services/trust/mex\n"
        f"                  SAML metadata   {sim_url}/idp/shibboleth\n"
        f"                  OpenID Connect  {sim_url}/oidc/.well-known/openid-configuration\n\n"
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
        f"Sign in with the phone (MFA at the device): open the verification_uri_complete this answers, then poll:\n"
        f"  curl -s -u demo-mfp:demo-mfp-secret -X POST {api}/v1/mfp/pairing\n"
        f"  (alice's TOTP code: loginbridge idp-sim otp --users conf/idp-sim/users.yaml alice@example.com;\n"
        f"   docs/pairing.md has the poll and the badge)\n"
        f"The OpenID Connect tenant example.net pairs the same way from 'demo-mfp-net' (nina has a TOTP code),\n"
        f"and its password prompt uses the password grant (oscar@example.net / oscar-demo-pass):\n"
        f"  curl -s -u demo-mfp-net:demo-mfp-net-secret -X POST {api}/v1/mfp/pairing\n"
        f"Metrics: {api}/metrics   API description: {api}/v1/openapi.json\n"
        + _printer_instructions(config, api)
        + "Ctrl-C stops it all.\n"
    )


def _console_line(config: BridgeConfig, api: str) -> str:
    if config.console is None or not config.console.users:
        return ""
    names = [user.name for user in config.console.users]
    name, password = DEMO_CONSOLE_USER
    login = f"demo user {name}, password {password}" if name in names else "users: " + ", ".join(names)
    return f"  console         {api}/console  ({login})\n"


def _printer_line(config: BridgeConfig, ca_file: Path | None) -> str:
    printer = config.printer
    if printer is None or not printer.enabled:
        return ""
    plain = f"  printer         ipp://{printer.host}:{printer.port}/ipp/print\n"
    if printer.tls is None:
        return plain
    demo_ca = ca_file is not None and printer.tls.cert.parent == ca_file.parent
    trust = f"issued by the demo CA {ca_file}" if demo_ca else f"certificate {printer.tls.cert}"
    return plain + f"  printer (TLS)   ipps://{printer.host}:{printer.port}/ipp/print  ({trust})\n"


def _printer_instructions(config: BridgeConfig, api: str) -> str:
    printer = config.printer
    if printer is None or not printer.enabled:
        return ""
    outbox = printer.delivery.outbox_dir or printer.delivery.url
    scheme = "ipp" if printer.tls is None else "ipps"
    tls_note = "" if printer.tls is None else (
        "(ipps:// is TLS; ipptool trusts the certificate on first use. A password may cross plain ipp://\n"
        f"only from {', '.join(str(n) for n in printer.plain_http_from or ()) or 'nowhere'}.)\n")
    return (
        f"Print-to-Web printer (alice and bob print with their demo passwords; delivered jobs land in\n"
        f"{outbox}):\n"
        f"  ipptool -tv -f FILE.pdf '{scheme}://alice%40example.com:alice-demo-pass@{printer.host}:{printer.port}"
        f"/ipp/print' print-job.test\n"
        + tls_note
        + f"  A personal printer URL that needs no password (Windows, phones): {api}/print/setup\n"
    )


# --------------------------------------------------------------------------
# Running it.


def quiet_third_party_warnings() -> None:
    """Hide the deprecation warnings that third-party imports raise in code that is not ours to fix.

    Each one exactly (message, category, the module that triggers it); must run before they are imported:
    pysaml2 (the simulator's SAML IdP) imports a cipher mode that cryptography has moved (shown even
    without -W), ldap3 (the directory sync) imports pyasn1 names that pyasn1 has renamed (shown with -W
    default or python -X dev).
    """
    warnings.filterwarnings("ignore", message="CFB has been moved", category=CryptographyDeprecationWarning,
                            module=r"saml2\.cryptography\.symmetric")
    warnings.filterwarnings("ignore", message=r"(tagMap|typeMap) is deprecated", category=DeprecationWarning,
                            module=r"ldap3\.utils\.asn1")


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoOptions:
    config: Path
    sim_users: Path
    seed_dir: Path
    sim_port: int | None = None
    api_port: int | None = None
    printer_port: int | None = None


async def serve_demo(opts: DemoOptions) -> None:
    preliminary = with_demo_ports(load_config(opts.config, require_files=False), api_port=opts.api_port,
                                  printer_port=opts.printer_port)
    setup_logging(preliminary.log_level)
    sim_port = opts.sim_port if opts.sim_port is not None else named_sim_port(preliminary) or DEFAULT_SIM_PORT
    wanted = [("the device API and console", "--api-port", preliminary.listen_host, preliminary.listen_port),
              ("the IdP simulator", "--sim-port", SIM_HOST, sim_port)]
    if preliminary.printer is not None and preliminary.printer.enabled:
        wanted.append(("the printer", "--printer-port", preliminary.printer.host, preliminary.printer.port))
    check_ports(wanted)
    # Imported here, after quiet_third_party_warnings (main): they import pysaml2 and ldap3.
    from bridge.app import make_app, make_runner
    from bridge.idpsim.config import load_config as load_sim_config
    from bridge.idpsim.server import run_simulator

    sim_config = demo_redirect_uris(load_sim_config(opts.sim_users), preliminary)
    async with run_simulator(sim_config, preliminary.state_dir / "idp-sim", host=SIM_HOST, port=sim_port) as sim:
        await asyncio.to_thread(demo_printer_cert, preliminary, sim.keys)
        # Now the simulator's CA and the demo printer's certificate exist: full validation.
        config = with_demo_ports(load_config(opts.config), api_port=opts.api_port, printer_port=opts.printer_port)
        if named_sim_port(config) not in (None, sim.port):
            # The tenant files name another port: the bridge reads copies of them with the simulator's.
            tenants_dir = await asyncio.to_thread(write_demo_tenants, config, sim.port,
                                                  config.state_dir / DEMO_TENANTS_DIR)
            log.info("demo tenants: %s/*.yaml with the IdP simulator on port %s, as %s/ (the files in %s are "
                     "unchanged)", config.tenants_dir, sim.port, tenants_dir, config.tenants_dir)
            config = dataclasses.replace(move_simulator(config, sim.port), tenants_dir=tenants_dir)
        for warning in config.warnings:
            log.warning("%s", warning)
        async with await Store.open(config.store_url) as store:
            await seed(config, store, opts.seed_dir)
        # As `loginbridge serve`: aiohttp's access log only at DEBUG (each login has its own INFO line).
        access_log = logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None
        runner = make_runner(make_app(config), config, access_log=access_log)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.listen_host, config.listen_port)
            await site.start()
            print(_instructions(config, sim.base_url, sim.ca_file), flush=True)
            await _until_stopped()
        finally:
            await runner.cleanup()
    print("loginbridge demo stopped.", file=sys.stderr, flush=True)


def demo_redirect_uris(sim_config: SimConfig, config: BridgeConfig) -> SimConfig:
    """The simulator's OpenID Connect clients also accept the demo bridge's callbacks as they are now.

    ``--api-port`` moves ``public_url``; the users file registers the default port's callback only.
    """
    for tenant in config.tenants:
        oidc = tenant.oidc
        if oidc is None or sim_config.oidc.client(oidc.client_id) is None:
            continue
        callback = oidc.redirect_uri or f"{config.public_url.rstrip('/')}/oidc/{tenant.id}/callback"
        sim_config = sim_config.with_oidc_redirect_uris(oidc.client_id, callback)
    return sim_config


def demo_printer_cert(config: BridgeConfig, keys: SimKeys) -> None:
    """The simulator made the demo printer's certificate (loopback, host name); add ``printer.host`` if another.

    Only when ``printer.tls`` names that certificate: a printer's own is never touched.
    """
    from bridge.idpsim.keys import PRINTER_CERT_FILE, PRINTER_KEY_FILE, ensure_server_cert, printer_names

    printer = config.printer
    if printer is None or printer.tls is None or printer.tls.cert != keys.printer_cert_file:
        return
    names = printer_names()
    if printer.host not in (*names, "0.0.0.0", "::", ""):  # noqa: S104 - wildcard binds name no host
        ensure_server_cert(keys.keys_dir, PRINTER_CERT_FILE, PRINTER_KEY_FILE, (*names, printer.host))


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r} (1-65535)")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loginbridge demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default="conf/bridge.yaml", type=Path)
    parser.add_argument("--sim-users", default="conf/idp-sim/users.yaml", type=Path)
    parser.add_argument("--seed-dir", default="conf/demo", type=Path)
    parser.add_argument("--api-port", type=_port, metavar="N",
                        help="the device API and console port (default: listen.port, 8080)")
    parser.add_argument("--printer-port", type=_port, metavar="M",
                        help="the Print-to-Web printer's port (default: printer.port, 8631)")
    parser.add_argument("--sim-port", type=_port, metavar="K",
                        help="the IdP simulator's port; the demo tenants' loopback IdP URLs are moved to it "
                             f"(default: the port they name, {DEFAULT_SIM_PORT})")
    args = parser.parse_args(argv)
    opts = DemoOptions(config=args.config, sim_users=args.sim_users, seed_dir=args.seed_dir, sim_port=args.sim_port,
                       api_port=args.api_port, printer_port=args.printer_port)
    quiet_third_party_warnings()
    try:
        asyncio.run(serve_demo(opts))
    except DemoError as exc:
        print(f"loginbridge demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
