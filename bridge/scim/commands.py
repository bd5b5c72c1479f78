"""``loginbridge scim token create|list|revoke``: the bearer tokens an IdP provisions a tenant with.

``create --tenant ID [--name NAME]`` prints the token once (only its SHA-256 is stored) and the base
URL to give Entra ID or Okta; ``list [--tenant ID] [--json]`` shows names, ids and use, never a token;
``revoke TOKEN_ID`` stops it at once on every instance.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bridge.config import BridgeConfig
from bridge.login.tenants import find_tenant
from bridge.scim import PREFIX
from bridge.state.store import Store
from bridge.state.tokens import create_token, list_tokens, revoke_token, token_json, token_line

COMMAND = "scim"
EXIT_OK = 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``scim token ...`` to the ``loginbridge`` parser."""
    scim = commands.add_parser(COMMAND, help="SCIM 2.0 provisioning (Entra ID, Okta)").add_subparsers(
        dest="scim_what", required=True)
    token = scim.add_parser("token", help="the tenants' SCIM bearer tokens").add_subparsers(
        dest="action", required=True)
    create = token.add_parser("create", parents=[common], help="create a tenant's SCIM token (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="scim", help="who uses it, for the audit trail (default: scim)")
    lst = token.add_parser("list", parents=[common], help="list SCIM tokens (never the tokens themselves)")
    lst.add_argument("--tenant")
    lst.add_argument("--json", action="store_true")
    revoke = token.add_parser("revoke", parents=[common], help="revoke a SCIM token at once")
    revoke.add_argument("token_id", type=int, metavar="TOKEN_ID", help="the id that 'scim token list' shows")


async def run(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """The command on an open store (``loginbridge`` runs it through its ``_with_store``)."""
    db = store.database
    if args.action == "create":
        tenant = await find_tenant(config, store, args.tenant)
        token, plaintext = await create_token(db, kind="scim", name=args.name, tenant_id=tenant.id)
        print(f"token id:  {token.id} ({token.name}, tenant {tenant.id})")
        print(f"token:     {plaintext}")
        print(f"base URL:  {config.public_url.rstrip('/')}{PREFIX}/{tenant.id}")
        print("warning: the token is shown only this once; paste it into the IdP's provisioning settings now "
              "(create another and revoke this one if it is lost)")
    elif args.action == "list":
        tenant_id = None if args.tenant is None else (await find_tenant(config, store, args.tenant)).id
        tokens = await list_tokens(db, kind="scim", tenant_id=tenant_id)
        if args.json:
            print(json.dumps([token_json(t) for t in tokens], indent=2))
        else:
            for t in tokens:
                print(token_line(t))
            print(f"{len(tokens)} tokens")
    else:
        token = await revoke_token(db, args.token_id, kind="scim")
        print(f"revoked SCIM token {token.id} ({token.name}, tenant {token.tenant_id}); it no longer works")
    return EXIT_OK
