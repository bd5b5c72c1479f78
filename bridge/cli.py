"""The ``loginbridge`` command: check the configuration, manage users and devices, serve.

Errors are one line on stderr with exit status 2, never a traceback: the
people running this are administrators fixing a file or a typo.  ``config check``
lists every mistake of the configuration, a line each, and then how many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bridge.adminapi import commands as admin_commands
from bridge.config import BridgeConfig, TenantConfig, load_config, summarize
from bridge.errors import BridgeError, ConfigError, ConfigErrors, RequestError
from bridge.scim import commands as scim_commands
from bridge.state.store import Device, Store, User
from bridge.toolkit import commands as toolkit

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
DEFAULT_CONFIG = "conf/bridge.yaml"


class _UsageError(Exception):
    """argparse wants to exit; we want one line and status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def _default_config() -> str:
    return os.environ.get("LOGINBRIDGE_CONFIG") or DEFAULT_CONFIG


def _build_parser() -> _Parser:
    config_help = f"main configuration file (default: $LOGINBRIDGE_CONFIG or {DEFAULT_CONFIG})"
    parser = _Parser(prog="loginbridge", description="Bridge office devices to enterprise single sign-on.")
    parser.add_argument("--config", default=None, metavar="FILE", help=config_help)
    # Sub-commands take --config too; SUPPRESS keeps them from resetting a value given before them.
    common = _Parser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help=config_help)

    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    config = commands.add_parser("config", help="configuration tools").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    config.add_parser("check", parents=[common], help="validate the configuration and summarise it")
    config.add_parser("reload", parents=[common],
                      help="validate the tenant files and write the changed ones to the store: every running "
                           "instance serves them within seconds (as SIGHUP does for one process)")

    tenants = commands.add_parser("tenants", help="tenants as live data in the store").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    tapply = tenants.add_parser("apply", parents=[common],
                                help="validate every tenant file of DIR (default: the configuration's tenants_dir) "
                                     "and write the changed ones to the store; all or nothing")
    tapply.add_argument("directory", nargs="?", type=Path, metavar="DIR")
    tenants.add_parser("list", parents=[common], help="the tenants in the store, with where each came from")
    tdel = tenants.add_parser("delete", parents=[common],
                              help="remove a tenant from the store (its users and devices stay until deleted)")
    tdel.add_argument("tenant", metavar="ID")

    db = commands.add_parser("db", help="the store's database").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    db.add_parser("upgrade", parents=[common],
                  help="apply the schema migrations (also done at start, under a lock) and print the version")

    users = commands.add_parser("users", help="manage user accounts").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    add = users.add_parser("add", parents=[common], help="create one account")
    add.add_argument("--tenant", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--username", required=True)
    add.add_argument("--display-name", default="")
    add.add_argument("--group", default="")
    pw = add.add_mutually_exclusive_group()
    pw.add_argument("--no-password", action="store_true", help="no platform password (the SSO default)")
    pw.add_argument("--password-stdin", action="store_true", help="read a platform password from stdin")
    add.add_argument("--2fa", dest="twofa", action="store_true", help="platform 2FA (refused for SSO)")
    lst = users.add_parser("list", parents=[common], help="list a tenant's accounts")
    lst.add_argument("--tenant", required=True)
    lst.add_argument("--json", action="store_true")
    dis = users.add_parser("disable", parents=[common], help="disable an account and end its sessions")
    dis.add_argument("--tenant", required=True)
    dis.add_argument("--email", required=True)
    imp = users.add_parser("import", parents=[common], help="import accounts from a CSV file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--tenant", required=True)
    imp.add_argument("--skip-invalid", action="store_true", help="import the good rows even if some are bad")

    devices = commands.add_parser("devices", help="manage registered devices").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    dadd = devices.add_parser("add", parents=[common], help="register a device (prints its secret once)")
    dadd.add_argument("--tenant", required=True)
    dadd.add_argument("--name", required=True)
    dadd.add_argument("--mode", required=True, choices=["shared-account", "device-login", "user-prompt"])
    dadd.add_argument("--shared-user", metavar="EMAIL")
    dadd.add_argument("--allow-network", metavar="CIDR", action="append", default=[],
                      help="source network the device may call from (repeatable; on top of the tenant's "
                           "device_networks)")
    dadd.add_argument("--device-id", metavar="ID", help="the device id (default: generated)")
    dadd.add_argument("--location", metavar="TEXT", default="",
                      help="where the device stands, e.g. 'Reception, ground floor' (shown on the phone before "
                           "a user approves a pairing; at most 128 characters)")
    dlist = devices.add_parser("list", parents=[common], help="list devices")
    dlist.add_argument("--tenant")
    dlist.add_argument("--json", action="store_true")
    ddis = devices.add_parser("disable", parents=[common], help="disable a device and end its sessions")
    ddis.add_argument("device_id")
    drot = devices.add_parser("rotate-secret", parents=[common], help="issue a new device secret")
    drot.add_argument("device_id")
    den = devices.add_parser("enable", parents=[common], help="let a disabled device authenticate again")
    den.add_argument("device_id")

    directory = commands.add_parser("directory", help="directory sync over LDAP (docs/directory.md)").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    dsync = directory.add_parser("sync", parents=[common],
                                 help="create, update and disable a tenant's accounts from its directory")
    dsync.add_argument("--tenant", required=True)
    dsync.add_argument("--dry-run", action="store_true", help="read and plan, change nothing")
    dsync.add_argument("--verbose", "-v", action="store_true", help="list every change, not only refused rows")

    audit = commands.add_parser("audit", help="the audit trail of login attempts").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    tail = audit.add_parser("tail", parents=[common], help="print the latest audit events as JSON lines")
    tail.add_argument("--tenant", help="only this tenant's events")
    tail.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="how many (default 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events as they arrive")
    tail.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    serve = commands.add_parser("serve", parents=[common], help="run the bridge service")
    # Several instances on one configuration (behind a load balancer) each take their own ports.
    serve.add_argument("--port", type=_port, help="listen on this port instead of listen.port")
    serve.add_argument("--printer-port", type=_port, help="the printer listens on this port instead of printer.port")
    commands.add_parser("idp-sim", help="run the identity-provider simulator (arguments passed on)")
    commands.add_parser("demo", help="run the demonstration (arguments passed on: --api-port, --printer-port, "
                        "--sim-port move its listeners)")
    commands.add_parser("cluster-demo", help="run the demonstration as a cluster: PostgreSQL, three instances, "
                        "HAProxy (arguments passed on)")
    toolkit.register(commands, common)  # check, device-test, print-test, console
    scim_commands.register(commands, common)  # scim token create|list|revoke
    admin_commands.register(commands, common)  # admin token create|list|revoke
    return parser


# --------------------------------------------------------------------------
# Commands.


def _config(args: argparse.Namespace, *, require_files: bool = False) -> BridgeConfig:
    return load_config(args.config or _default_config(), require_files=require_files)


def _tenant(config: BridgeConfig, tenant_id: str) -> TenantConfig:
    return config.tenant(tenant_id)  # RequestError listing the known ids


def _cmd_config_check(args: argparse.Namespace) -> int:
    try:
        config = _config(args, require_files=True)
    except ConfigError as exc:  # every mistake, each as file:line: key: message, then the count
        errors = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{len(errors)} {'error' if len(errors) == 1 else 'errors'} in the configuration", file=sys.stderr)
        return EXIT_ERROR
    print(summarize(config))
    for warning in config.warnings:
        print(f"warning: {warning}")
    print("configuration OK")
    return EXIT_OK


def _user_json(user: User) -> dict[str, object]:
    return {
        "tenant": user.tenant_id, "email": user.email, "username": user.username,
        "display_name": user.display_name, "group": user.group, "enabled": user.enabled,
        "has_password": user.has_password, "twofa": user.twofa_enabled, "language": user.language,
        "fax_number": user.fax_number, "created_at": user.created_at.isoformat(),
    }


def _device_json(device: Device) -> dict[str, object]:
    return {
        "device_id": device.device_id, "tenant": device.tenant_id, "name": device.name,
        "mode": device.mode.value, "enabled": device.enabled, "shared_user": device.shared_user_email,
        "allowed_networks": [str(n) for n in device.allowed_networks],
        "created_at": device.created_at.isoformat(),
        "last_seen_at": None if device.last_seen_at is None else device.last_seen_at.isoformat(),
        "last_seen_addr": device.last_seen_addr, "location": device.location,
    }


async def _cmd_tenants(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """``tenants apply|list|delete`` and ``config reload``: tenants as store records (bridge/login/tenants.py)."""
    from bridge.login.tenants import LiveTenants
    from bridge.state.tenants import delete_tenant, tenant_records

    if args.command == "config" or args.action == "apply":
        report = await LiveTenants(config).apply_files(store, getattr(args, "directory", None))
        print(f"tenants written: {', '.join(report.written) or 'none'}; unchanged: {len(report.unchanged)}"
              + (f"; without a file (kept): {', '.join(report.orphans)}" if report.orphans else ""))
        return EXIT_OK
    if args.action == "delete":
        if not await delete_tenant(store.database, args.tenant):
            print(f"no tenant {args.tenant!r} in the store", file=sys.stderr)
            return EXIT_FAILED
        print(f"tenant {args.tenant} deleted from the store")
        return EXIT_OK
    version, records = await tenant_records(store.database)
    for record in records:
        print(f"{record.tenant_id}\t{record.origin}\t{record.updated_at.isoformat(timespec='seconds')}")
    print(f"version {version}: {len(records)} tenant(s)")
    return EXIT_OK


async def _cmd_db_upgrade(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """``db upgrade``: opening the store migrated it (one transaction per step, under the database's lock)."""
    print(f"{store.url}: schema version {await store.schema_version()}")
    return EXIT_OK


async def _cmd_users(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    tenant = _tenant(config, args.tenant)
    if args.action == "add":
        password: str | None = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise RequestError("no password on standard input")
        user = await store.add_user(tenant, email=args.email, username=args.username,
                              display_name=args.display_name, group=args.group, password=password,
                              twofa=args.twofa)
        print(f"added {user.email} to tenant {tenant.id}"
              + (" (with a platform password)" if user.has_password else " (no platform password)"))
    elif args.action == "list":
        users = await store.list_users(tenant.id)
        if args.json:
            print(json.dumps([_user_json(u) for u in users], indent=2))
        else:
            for u in users:
                state = "enabled" if u.enabled else "disabled"
                print(f"{u.email}\t{u.username}\t{u.group or '-'}\t{state}"
                      f"\t{'password' if u.has_password else 'no-password'}")
            print(f"{len(users)} users in tenant {tenant.id}")
    elif args.action == "disable":
        revoked = await store.disable_user(tenant.id, args.email)
        print(f"disabled {args.email} in tenant {tenant.id}; {revoked} sessions ended")
    else:  # import
        report = await store.import_users_csv(tenant, args.file, skip_invalid=args.skip_invalid)
        for error in report.errors:
            print(f"line {error.line}: {error.reason}")
        print(f"imported {len(report.imported)} users into tenant {tenant.id}"
              + (f"; {len(report.errors)} rows refused" if report.errors else ""))
        if report.errors and not report.imported:
            if not args.skip_invalid:
                print("nothing was imported: fix the rows above or use --skip-invalid")
            return EXIT_FAILED
    return EXIT_OK


async def _cmd_devices(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    if args.action == "add":
        tenant = _tenant(config, args.tenant)
        device, secret = await store.add_device(tenant.id, name=args.name, mode=args.mode,
                                          shared_user_email=args.shared_user,
                                          allowed_networks=args.allow_network, device_id=args.device_id,
                                          location=args.location)
        print(f"device id: {device.device_id}")
        print(f"secret:    {secret}")
        print("warning: the secret is shown only this once; store it in the device now "
              "(use rotate-secret if it is lost)")
    elif args.action == "list":
        tenant_id = None if args.tenant is None else _tenant(config, args.tenant).id
        devices = await store.list_devices(tenant_id)
        if args.json:
            print(json.dumps([_device_json(d) for d in devices], indent=2))
        else:
            for d in devices:
                seen = "never"
                if d.last_seen_at is not None:
                    seen = f"{d.last_seen_at:%Y-%m-%d %H:%M} from {d.last_seen_addr}"
                extra = f"\tacts as {d.shared_user_email}" if d.shared_user_email else ""
                if d.allowed_networks:
                    extra += f"\tnetworks {','.join(str(n) for n in d.allowed_networks)}"
                if d.location:
                    extra += f"\tat {d.location}"
                print(f"{d.device_id}\t{d.tenant_id}\t{d.mode.value}\t"
                      f"{'enabled' if d.enabled else 'disabled'}\t{d.name}\tlast seen {seen}{extra}")
            print(f"{len(devices)} devices")
    elif args.action == "disable":
        await store.disable_device(args.device_id)
        print(f"disabled device {args.device_id}; its sessions are ended")
    elif args.action == "enable":
        await store.enable_device(args.device_id)
        print(f"enabled device {args.device_id}")
    else:  # rotate-secret
        secret = await store.rotate_device_secret(args.device_id)
        print(f"device id: {args.device_id}")
        print(f"secret:    {secret}")
        print("warning: the secret is shown only this once; the old secret no longer works")
    return EXIT_OK


async def _cmd_audit(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """``audit tail``: the last events from the database, then (``--follow``) new ones as they come."""
    tenant_id = None if args.tenant is None else _tenant(config, args.tenant).id
    if args.lines < 0:
        raise RequestError("--lines must be 0 or more")
    last_id = 0
    for event in await store.audit_events(tenant_id=tenant_id, last=args.lines):
        print(event.line(), flush=True)
        last_id = event.id or last_id
    if not args.follow:
        return EXIT_OK
    if last_id == 0:
        newest = await store.audit_events(last=1)
        last_id = (newest[0].id or 0) if newest else 0
    while True:
        await asyncio.sleep(max(0.05, args.interval))
        for event in await store.audit_events(tenant_id=tenant_id, after_id=last_id):
            print(event.line(), flush=True)
            last_id = event.id or last_id


async def _cmd_directory(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """``directory sync``: the refused rows (and with --verbose every change), then the summary line."""
    from bridge.directory.plan import Action
    from bridge.directory.sync import sync_tenant
    from bridge.state.audit import AuditLog

    tenant = _tenant(config, args.tenant)
    audit = AuditLog(config.audit_file, store)
    audit.open()
    try:
        result = await sync_tenant(tenant, store, dry_run=args.dry_run, audit=audit)
    finally:
        audit.close()
    assert result is not None
    for change in result.plan.changes:
        if change.action is Action.REFUSED or (args.verbose and change.action is not Action.UNCHANGED):
            print(change.line())
    for change, why in result.failed:
        print(f"not applied: {change.line()}: {why}")
    print(result.summary())
    return EXIT_FAILED if result.failed else EXIT_OK


def _with_store(handler: Callable[[argparse.Namespace, BridgeConfig, Store], Awaitable[int]],
                args: argparse.Namespace) -> int:
    # Managing accounts must work before the IdP's certificate files exist.
    config = _config(args, require_files=False)

    async def run() -> int:
        async with await Store.open(config.store_url) as store:
            return await handler(args, config, store)

    return asyncio.run(run())


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r} (0-65535)")
    return port


def _cmd_serve(args: argparse.Namespace) -> int:
    from bridge.app import run  # type: ignore[import-not-found, unused-ignore]

    return int(run(Path(args.config or _default_config()), port=args.port, printer_port=args.printer_port))


def _delegate(command: str, rest: list[str]) -> int:
    """idp-sim, demo and cluster-demo take their own arguments; their modules parse them."""
    if command == "idp-sim":
        from bridge.idpsim.cli import main as sim_main  # type: ignore[import-not-found, unused-ignore]

        return int(sim_main(rest))
    if command == "cluster-demo":
        from bridge.clusterdemo import main as cluster_main  # type: ignore[import-not-found, unused-ignore]

        return int(cluster_main(rest))
    from bridge.demo import main as demo_main  # type: ignore[import-not-found, unused-ignore]

    return int(demo_main(rest))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loginbridge`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] in ("idp-sim", "demo", "cluster-demo"):
            return _delegate(args_list[0], args_list[1:])
        args = _build_parser().parse_args(args_list)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        if args.command == "config" and args.action == "reload":
            return _with_store(_cmd_tenants, args)
        if args.command == "config":
            return _cmd_config_check(args)
        if args.command == "tenants":
            return _with_store(_cmd_tenants, args)
        if args.command == "db":
            return _with_store(_cmd_db_upgrade, args)
        if args.command == "users":
            return _with_store(_cmd_users, args)
        if args.command == "devices":
            return _with_store(_cmd_devices, args)
        if args.command == "audit":
            return _with_store(_cmd_audit, args)
        if args.command == "directory":
            return _with_store(_cmd_directory, args)
        if args.command == scim_commands.COMMAND:
            return _with_store(scim_commands.run, args)
        if args.command == admin_commands.COMMAND:
            return _with_store(admin_commands.run, args)
        if args.command in toolkit.COMMANDS:
            return toolkit.run(args, args.config or _default_config())
        return _cmd_serve(args)
    except _UsageError as exc:
        print(f"{exc} (try --help)", file=sys.stderr)
    except ConfigError as exc:
        for error in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
            print(str(error), file=sys.stderr)
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("bridge."):
            raise
        print(f"error: this command is not available in this build ({exc.name} is missing)", file=sys.stderr)
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    return EXIT_ERROR
