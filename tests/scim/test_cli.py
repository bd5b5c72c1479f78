"""``loginbridge scim token create|list|revoke``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bridge.state.store import Store
from bridge.state.tokens import verify_token
from tests.bridge.test_cli import conf, run

__all__ = ["conf"]


def test_scim_token_create_list_revoke(conf: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "--config", str(conf), "scim", "token", "create", "--tenant", "example",
                         "--name", "entra-prod")
    assert code == 0, err
    token = next(line.split()[-1] for line in out.splitlines() if line.startswith("token:"))
    assert token.startswith("lbscim_")
    assert "/scim/v2/example" in out and "only this once" in out

    code, out, err = run(capsys, "--config", str(conf), "scim", "token", "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert (listed["name"], listed["tenant"], listed["revoked_at"]) == ("entra-prod", "example", None)
    assert token not in out
    code, out, _ = run(capsys, "--config", str(conf), "scim", "token", "list")
    assert "entra-prod" in out and "live" in out and token not in out

    async def verified() -> bool:
        from bridge.config import load_config

        async with await Store.open(load_config(conf, require_files=False).store_url) as store:
            return await verify_token(store.database, token, kind="scim") is not None

    assert asyncio.run(verified())
    code, out, err = run(capsys, "--config", str(conf), "scim", "token", "revoke", str(listed["id"]))
    assert code == 0 and "revoked" in out, err
    assert not asyncio.run(verified())

    code, _, err = run(capsys, "--config", str(conf), "scim", "token", "create", "--tenant", "nope")
    assert code == 2 and "unknown tenant" in err
    code, _, err = run(capsys, "--config", str(conf), "scim", "token", "revoke", "999")
    assert code == 2 and "no scim token" in err
