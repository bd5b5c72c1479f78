"""The tenant's ``directory:`` section: AD defaults, and mistakes named by file, key and line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import AD_USER_FILTER
from bridge.errors import ConfigError
from bridge.localservers.slapd import make_test_ca
from tests.directory.conftest import PASSWORD_ENV, write_config

BASE: dict[str, Any] = {
    "url": "ldaps://dc1.example.com",
    "bind_dn": "CN=loginbridge-sync,OU=Service Accounts,DC=example,DC=com",
    "bind_password_env": PASSWORD_ENV,
    "base_dn": "OU=Staff,DC=example,DC=com",
}


def directory(**changes: Any) -> dict[str, Any]:
    section = dict(BASE)
    section.update(changes)
    return {k: v for k, v in section.items() if v is not None}


def test_active_directory_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    cfg = write_config(tmp_path, directory()).tenant("example").directory
    assert cfg is not None
    assert (cfg.host, cfg.port, cfg.use_ssl, cfg.starttls, cfg.ca_file) == ("dc1.example.com", 636, True, False, None)
    assert (cfg.email_attribute, cfg.email_fallback_attribute, cfg.username_attribute,
            cfg.display_name_attribute) == ("mail", "userPrincipalName", "sAMAccountName", "displayName")
    assert cfg.user_filter == AD_USER_FILTER and cfg.disabled_filter is None  # userAccountControl bit 2
    assert (cfg.page_size, cfg.sync_every, cfg.group_dn) == (500, None, None)
    assert "x" not in repr(cfg).replace("example", "")  # the password is read at sync time, never kept


def test_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_test_ca(tmp_path / "tls")
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    config = write_config(tmp_path, directory(
        url="ldap://dc1.example.com:3389", starttls=True, ca_file="../../tls/ca.pem", bind_password_env=None,
        bind_password_file="../../pw", group_dn="CN=Fax,OU=Groups,DC=example,DC=com", nested_groups=True,
        attributes={"email": "mail", "email_fallback": None, "username": "uid", "display_name": "cn"},
        disabled_filter="(employeeType=disabled)", page_size=200, timeout_seconds=10, sync_every_minutes=60))
    cfg = config.tenant("example").directory
    assert cfg is not None
    assert (cfg.port, cfg.use_ssl, cfg.starttls) == (3389, False, True)
    assert cfg.bind_password_file == tmp_path / "pw" and cfg.ca_file == tmp_path / "tls" / "ca.pem"
    assert (cfg.email_fallback_attribute, cfg.username_attribute, cfg.display_name_attribute) == (None, "uid", "cn")
    assert (cfg.page_size, cfg.timeout, cfg.sync_every) == (200, 10.0, timedelta(hours=1))
    assert cfg.nested_groups and cfg.disabled_filter == "(employeeType=disabled)"


@pytest.mark.parametrize(("changes", "key", "message"), [
    ({"url": "ldap://dc1.example.com"}, "directory.url", "the bind password would travel in clear text"),
    ({"url": "https://dc1.example.com"}, "directory.url", "must be an ldaps://"),
    ({"url": "ldaps://dc1.example.com/DC=example"}, "directory.url", "give only scheme, host and port"),
    ({"starttls": True}, "directory.starttls", "starttls is for ldap:// URLs"),
    ({"bind_password_file": "pw"}, "directory.bind_password_env", "give exactly one of"),
    ({"bind_password_env": None}, "directory.bind_password_env", "give exactly one of"),
    ({"bind_password": "hunter2"}, "directory.bind_password", "unknown key (did you mean bind_password_env?)"),
    ({"user_filter": "objectClass=user"}, "directory.user_filter", "not an LDAP filter in parentheses"),
    ({"disabled_filter": "(&(a=b)"}, "directory.disabled_filter", "not an LDAP filter in parentheses"),
    ({"nested_groups": True}, "directory.nested_groups", "nested_groups needs group_dn"),
    ({"attributes": {"mail": "mail"}}, "directory.attributes.mail", "unknown key (did you mean email?)"),
    ({"attributes": {"username": "s AM"}}, "directory.attributes.username", "not an LDAP attribute name"),
    ({"page_size": 0}, "directory.page_size", "must be between 1 and 100000"),
    ({"base_dn": None}, "directory.base_dn", "missing required key"),
])
def test_mistakes_name_the_key_and_line(tmp_path: Path, changes: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        write_config(tmp_path, directory(**changes))
    error = caught.value
    assert message in str(error)
    assert error.key == key and error.line is not None and error.file.endswith("example.yaml")


def test_a_missing_password_variable_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    config = write_config(tmp_path, directory())
    assert any(PASSWORD_ENV in w and "is not set" in w for w in config.warnings)
