"""``loginbridge admin token create|list|revoke``: the bearer tokens of the admin API (/admin/v1).

``create --name NAME [--tenant ID]`` prints the token once (only its SHA-256 is stored); without
``--tenant`` it is a global token (every tenant, and creating, changing and deleting tenants), with it
the token sees that tenant only. ``list [--tenant ID] [--json]`` shows names, ids and use, never a
token; ``revoke TOKEN_ID`` stops it at once on every instance. The name is what the audit trail records
for every change made with the token.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bridge.adminapi.http import PREFIX
from bridge.config import BridgeConfig
from bridge.login.tenants import find_tenant
from bridge.state.store import Store
from bridge.state.tokens import create_token, list_tokens, revoke_token, token_json, token_line

COMMAND = "admin"
EXIT_OK = 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``admin token ...`` to the ``loginbridge`` parser."""
    admin = commands.add_parser(COMMAND, help="the admin API (/admin/v1)").add_subparsers(
        dest="admin_what", required=True)
    token = admin.add_parser("token", help="the admin API's bearer tokens").add_subparsers(
        dest="action", required=True)
    create = token.add_parser("create", parents=[common], help="create an admin token (printed once)")
    create.add_argument("--name", required=True, help="who uses it; every change it makes is audited under it")
    create.add_argument("--tenant", metavar="ID", help="a token for this tenant only (default: every tenant)")
    lst = token.add_parser("list", parents=[common], help="list admin tokens (never the tokens themselves)")
    lst.add_argument("--tenant", metavar="ID")
    lst.add_argument("--json", action="store_true")
    revoke = token.add_parser("revoke", parents=[common], help="revoke an admin token at once")
    revoke.add_argument("token_id", type=int, metavar="TOKEN_ID", help="the id that 'admin token list' shows")


async def run(args: argparse.Namespace, config: BridgeConfig, store: Store) -> int:
    """The command on an open store (``loginbridge`` runs it through its ``_with_store``)."""
    db = store.database
    if args.action == "create":
        tenant_id = None if args.tenant is None else (await find_tenant(config, store, args.tenant)).id
        token, plaintext = await create_token(db, kind="admin", name=args.name, tenant_id=tenant_id)
        print(f"token id:  {token.id} ({token.name}, {'tenant ' + tenant_id if tenant_id else 'every tenant'})")
        print(f"token:     {plaintext}")
        print(f"base URL:  {config.public_url.rstrip('/') or f'http://{config.listen_host}:{config.listen_port}'}"
              f"{PREFIX}")
        print("warning: the token is shown only this once (create another and revoke this one if it is lost)")
    elif args.action == "list":
        tenant_id = None if args.tenant is None else (await find_tenant(config, store, args.tenant)).id
        tokens = await list_tokens(db, kind="admin", tenant_id=tenant_id)
        if args.json:
            print(json.dumps([token_json(t) for t in tokens], indent=2))
        else:
            for t in tokens:
                print(token_line(t))
            print(f"{len(tokens)} tokens")
    else:
        token = await revoke_token(db, args.token_id, kind="admin")
        print(f"revoked admin token {token.id} ({token.name}); it no longer works")
    return EXIT_OK
