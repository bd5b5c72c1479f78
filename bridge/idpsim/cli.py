"""``loginbridge idp-sim``: run the AD FS simulator until interrupted; ``idp-sim otp``: a user's current code.

``loginbridge idp-sim otp --users FILE EMAIL`` prints the six-digit TOTP code a
user marked ``mfa: totp`` would read from an authenticator app, so a technician
demonstrating the browser sign-in needs no phone app enrolled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from bridge.errors import ConfigError
from bridge.idpsim.browser.wsfed import WSFED_PATH
from bridge.idpsim.config import load_config
from bridge.idpsim.ecp.idp import POST_SSO_PATH, REDIRECT_SSO_PATH
from bridge.idpsim.keys import cert_fingerprint
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.oidc.routes import DISCOVERY_PATH
from bridge.idpsim.server import RunningSimulator, run_simulator

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loginbridge idp-sim",
        description="Run a local AD FS simulator (WS-Trust over https). "
        "'loginbridge idp-sim otp --users FILE EMAIL' prints a user's current TOTP code.",
    )
    parser.add_argument(
        "--users", type=Path, default=Path("conf/idp-sim/users.yaml"), help="users file (YAML)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9443, help="port to listen on (default 9443)")
    parser.add_argument(
        "--keys-dir", type=Path, default=Path("state/idp-sim"), help="where the CA, TLS and signing keys live"
    )
    return parser


def _otp_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loginbridge idp-sim otp",
        description="Print a simulated user's current TOTP code (users with mfa: totp).",
    )
    parser.add_argument(
        "--users", type=Path, default=Path("conf/idp-sim/users.yaml"), help="users file (YAML)"
    )
    parser.add_argument("email", help="the user's e-mail address, UPN or account name")
    return parser


def otp_main(argv: list[str]) -> int:
    """``idp-sim otp``: the code on stdout, problems on stderr with a non-zero status."""
    args = _otp_parser().parse_args(argv)
    try:
        config = load_config(args.users)
    except ConfigError as exc:
        print(f"idp-sim otp: {exc}", file=sys.stderr)
        return 2
    user = config.find_user(args.email)
    if user is None:
        print(f"idp-sim otp: no user {args.email!r} in {args.users}", file=sys.stderr)
        return 1
    generator = user.totp()
    if generator is None:
        print(f"idp-sim otp: {user.upn} has no second factor (no mfa: totp in {args.users})", file=sys.stderr)
        return 1
    print(generator.now())
    return 0


def describe(sim: RunningSimulator) -> str:
    """What a technician needs to point a tenant or a device at the simulator."""
    signing_file = sim.keys.signing_cert_file
    if sim.config.signing.cert_file is not None:
        signing_file = sim.config.signing.cert_file
    lines = [
        f"AD FS simulator listening on {sim.base_url}",
        f"  issuer            {sim.issuer}",
        f"  MEX               {sim.mex_url}",
        f"  metadata          {sim.metadata_url}",
        f"  WS-Trust 1.3      {sim.endpoint(TrustVersion.WS_TRUST_13)}",
        f"  WS-Trust 2005     {sim.endpoint(TrustVersion.WS_TRUST_2005)}",
        f"  SAML ECP          {sim.base_url}/idp/profile/SAML2/SOAP/ECP",
        f"  SAML metadata     {sim.base_url}/idp/shibboleth",
        f"  SAML browser SSO  {sim.base_url}{REDIRECT_SSO_PATH}  (HTTP-Redirect; HTTP-POST: {POST_SSO_PATH})",
        f"  WS-Fed passive    {sim.base_url}{WSFED_PATH}",
        f"  OIDC discovery    {sim.base_url}{DISCOVERY_PATH}  ({len(sim.config.oidc.clients)} client(s))",
        f"  controls          {sim.base_url}/_sim/stats  {sim.base_url}/_sim/control (loopback only)",
        f"  TLS CA to trust   {sim.ca_file}",
        f"  signing cert      {signing_file}",
        f"  signing SHA-256   {cert_fingerprint(sim.signing_cert_pem)}",
        f"  relying parties   {', '.join(sim.config.relying_parties) or '(none)'}",
        f"  users             {len(sim.config.users)}",
    ]
    return "\n".join(lines)


async def _serve(args: argparse.Namespace) -> None:
    config = load_config(args.users)
    async with run_simulator(config, args.keys_dir, host=args.host, port=args.port) as sim:
        print(describe(sim), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["otp"]:
        return otp_main(arguments[1:])
    args = _parser().parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except ConfigError as exc:
        print(f"idp-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"idp-sim: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
