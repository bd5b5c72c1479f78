"""``loginbridge admin token create|list|revoke``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.state.store import Store
from bridge.state.tokens import ApiToken, verify_token
from tests.bridge.test_cli import conf, run

__all__ = ["conf"]


def _verify(conf: Path, token: str) -> ApiToken | None:
    async def check() -> ApiToken | None:
        async with await Store.open(load_config(conf, require_files=False).store_url) as store:
            return await verify_token(store.database, token, kind="admin")

    return asyncio.run(check())


def _token(out: str) -> str:
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("token:"))


def test_admin_token_create_list_revoke(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", str(conf), "admin", "token", "create", "--name", "ops")
    assert code == 0, err
    token = _token(out)
    assert token.startswith("lbadmin_") and "every tenant" in out and "/admin/v1" in out and "only this once" in out
    checked = _verify(conf, token)
    assert checked is not None and (checked.name, checked.tenant_id) == ("ops", None)

    code, out, err = run(capsys, "--config", str(conf), "admin", "token", "create", "--name", "helpdesk",
                         "--tenant", "example")
    assert code == 0, err
    scoped = _token(out)
    assert (_verify(conf, scoped) or pytest.fail("not stored")).tenant_id == "example"

    code, out, err = run(capsys, "--config", str(conf), "admin", "token", "list", "--json")
    assert code == 0, err
    listed = {t["name"]: t for t in json.loads(out)}
    assert listed["ops"]["tenant"] is None and listed["helpdesk"]["tenant"] == "example"
    assert token not in out and scoped not in out
    code, out, _ = run(capsys, "--config", str(conf), "admin", "token", "list", "--tenant", "example")
    assert "helpdesk" in out and "ops" not in out and "1 tokens" in out

    code, out, err = run(capsys, "--config", str(conf), "admin", "token", "revoke", str(listed["ops"]["id"]))
    assert code == 0 and "revoked" in out, err
    assert _verify(conf, token) is None
    assert _verify(conf, scoped) is not None

    code, _, err = run(capsys, "--config", str(conf), "admin", "token", "create", "--name", "x", "--tenant", "nope")
    assert code == 2 and "unknown tenant" in err
    code, _, err = run(capsys, "--config", str(conf), "admin", "token", "create", "--name", "helpdesk",
                       "--tenant", "example")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "--config", str(conf), "admin", "token", "revoke", "999")
    assert code == 2 and "no admin token" in err
    code, _, err = run(capsys, "--config", str(conf), "admin", "token", "create")
    assert code == 2 and "--name" in err
