"""The technician commands of ``loginbridge``: check, device-test, print-test, console hash-password.

Secrets come from standard input, never from argv (argv shows in ``ps`` and
shell history).  When a command reads two secrets, they are two lines, in
the order the options are documented: the device secret first, then the
user's password.  On a terminal each is prompted for without echo.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError, ConfigErrors, RequestError
from bridge.toolkit.report import Report, Status, Step, render_json, render_text

COMMANDS = ("check", "device-test", "print-test", "console")
MAX_CONFIG_STEPS = 20  # configuration mistakes shown by `check`, one step each
EXIT_OK, EXIT_FAILED = 0, 1


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the technician sub-commands to the ``loginbridge`` parser."""
    check = commands.add_parser("check", parents=[common],
                                help="check every step between the bridge and a tenant's IdP")
    check.add_argument("tenant", help="tenant id (the tenant file's id)")
    check.add_argument("--email", help="also log this user in, through the same path devices use")
    check.add_argument("--password-stdin", action="store_true", help="read the user's password from stdin")
    check.add_argument("--json", action="store_true", help="print the steps as JSON")

    dev = commands.add_parser("device-test", help="play an MFP connector against a running bridge")
    dev.add_argument("--url", required=True, help="the bridge's base URL, e.g. http://127.0.0.1:8080")
    dev.add_argument("--device-id", required=True)
    dev.add_argument("--secret-stdin", action="store_true", required=True,
                     help="read the device secret from stdin (first line)")
    dev.add_argument("--email", help="the user to log in (user-prompt and device-login modes)")
    dev.add_argument("--password-stdin", action="store_true",
                     help="read the user's password from stdin (the line after the device secret)")
    dev.add_argument("--mode", choices=["auto", "user-prompt", "shared-account", "device-login"], default="auto",
                     help="the device's mode (default: try the modes the given inputs allow)")
    dev.add_argument("--json", action="store_true")

    prt = commands.add_parser("print-test", help="print a test page through the Print-to-Web printer")
    prt.add_argument("--url", required=True, help="ipp://HOST:PORT/ipp/print or ipps://HOST:PORT/ipp/print")
    prt.add_argument("--ca-file", type=Path, metavar="PEM",
                     help="verify an ipps printer's certificate against this CA (default: the system's CAs)")
    prt.add_argument("--email", required=True)
    prt.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the user's password from stdin")
    prt.add_argument("file", nargs="?", type=Path, help="document to print (default: a generated one-page PDF)")
    prt.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                     help="how long to wait for the job to complete (default 60)")
    prt.add_argument("--json", action="store_true")

    console = commands.add_parser("console", help="the technician console").add_subparsers(
        dest="action", required=True, parser_class=type(common))
    console.add_parser("hash-password", help="hash a console password read from stdin, for conf/bridge.yaml")


def _secret(prompt: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise RequestError(f"nothing read for the {prompt.rstrip(': ')} on standard input")
    return value


def _print(report: Report, as_json: bool) -> int:
    print(render_json(report) if as_json else render_text(report), flush=True)
    return EXIT_OK if report.ok else EXIT_FAILED


def run(args: argparse.Namespace, config_path: str) -> int:
    if args.command == "check":
        return _check(args, config_path)
    if args.command == "device-test":
        return _device_test(args)
    if args.command == "print-test":
        return _print_test(args)
    return _hash_password()


def _check(args: argparse.Namespace, config_path: str) -> int:
    from bridge.config import load_config
    from bridge.toolkit.check import Credentials, check_command

    credentials = None
    if args.password_stdin and not args.email:
        raise RequestError("--password-stdin needs --email")
    if args.email:
        if not args.password_stdin:
            raise RequestError("--email needs --password-stdin (a password is never taken from the command line)")
        credentials = Credentials(email=args.email, password=_secret("password: "))
    try:
        config = load_config(config_path, require_files=True)
    except ConfigError as exc:
        # Every mistake, one step each (the loader goes on past the first), so one run names them all.
        errors = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
        shown = errors[:MAX_CONFIG_STEPS]
        steps = [Step(name="configuration", status=Status.FAIL, summary=str(error)) for error in shown]
        more = f"; {len(errors) - len(shown)} more: `loginbridge config check` lists them" if len(errors) > len(shown) \
            else ""
        steps[-1] = dataclasses.replace(steps[-1], hint=f"fix the files, keys and lines named{more}")
        return _print(Report(tool="check", subject=args.tenant, started_at=datetime.now(UTC), steps=tuple(steps)),
                      args.json)
    report = asyncio.run(check_command(config, args.tenant, credentials))
    return _print(report, args.json)


def _device_test(args: argparse.Namespace) -> int:
    from bridge.toolkit.devicetest import DeviceTestInput, ModeChoice, run_device_test

    secret = _secret("device secret: ")
    password = _secret("password: ") if args.password_stdin else None
    if password is not None and not args.email:
        raise RequestError("--password-stdin needs --email")
    inp = DeviceTestInput(url=args.url, device_id=args.device_id, secret=secret, email=args.email,
                          password=password, mode=ModeChoice(args.mode))
    return _print(asyncio.run(run_device_test(inp)), args.json)


def _print_test(args: argparse.Namespace) -> int:
    from bridge.toolkit.printtest import PrintTestInput, format_for, parse_printer_url, run_print_test

    parse_printer_url(args.url)  # a bad URL is an error before the password is read
    password = _secret("password: ")
    document: bytes | None = None
    name = "loginbridge print-test"
    fmt = "application/pdf"
    if args.file is not None:
        document = args.file.read_bytes()
        name = args.file.name
        fmt = format_for(args.file)
    inp = PrintTestInput(url=args.url, email=args.email, password=password, document=document, document_name=name,
                         document_format=fmt, wait_seconds=args.wait, ca_file=args.ca_file)
    return _print(asyncio.run(run_print_test(inp)), args.json)


def _hash_password() -> int:
    from bridge.passwords import hash_password

    password = _secret("console password: ")
    print(hash_password(password))
    return EXIT_OK
