"""The ``oidc:`` section of a tenant file: what it accepts, and the mistakes it names (file, key, line)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.config import OidcClientAuth, Protocol, load_tenant_text
from bridge.errors import ConfigErrors

TENANT = """\
id: northwind
name: Northwind
domains: [northwind.example]
protocol: oidc
idp_whitelist: [127.0.0.1/32]
oidc:
  issuer: https://login.example/tenant/v2.0
  client_id: bridge-client
"""


def load(text: str, base: Path):
    return load_tenant_text(text, shown="tenant.yaml", base_dir=base, default_ttl=timedelta(hours=1))


def errors_of(text: str, base: Path) -> list[tuple[str | None, str]]:
    with pytest.raises(ConfigErrors) as info:
        load(text, base)
    return [(e.key, e.detail) for e in info.value.errors]


def test_a_confidential_client_with_its_secret_in_the_environment(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NW_SECRET", "s3cret")
    tenant, warnings = load(TENANT + "  client_auth: client_secret_basic\n  client_secret_env: NW_SECRET\n"
                            "  email_claim: preferred_username\n  signing_algorithms: [RS256, ES256, HS256]\n"
                            "  password_grant: true\n", tmp_path)
    assert tenant.protocol is Protocol.OIDC and tenant.wstrust is None and tenant.saml2 is None
    oidc = tenant.oidc
    assert oidc is not None
    assert oidc.client_auth is OidcClientAuth.CLIENT_SECRET_BASIC and oidc.client_secret_env == "NW_SECRET"
    assert oidc.email_claim == "preferred_username" and oidc.password_grant is True
    assert oidc.signing_algorithms == ("RS256", "ES256", "HS256")
    assert oidc.scopes == ("openid", "email", "profile") and oidc.clock_skew == timedelta(seconds=300)
    assert warnings == ()


def test_defaults_and_a_missing_secret_variable_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_UNSET", raising=False)
    tenant, warnings = load(TENANT + "  client_auth: client_secret_basic\n  client_secret_env: NW_UNSET\n", tmp_path)
    assert tenant.oidc is not None and tenant.oidc.password_grant is False and tenant.oidc.redirect_uri is None
    assert tenant.oidc.signing_algorithms == ("RS256",)
    assert any("NW_UNSET is not set" in w for w in warnings)


def test_private_key_jwt_needs_a_readable_private_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "client.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    (tmp_path / "client.key").chmod(0o600)
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    tenant, _ = load(TENANT + "  client_auth: private_key_jwt\n  private_key_file: client.key\n"
                     "  private_key_id: k1\n  private_key_algorithm: ES256\n", tmp_path)
    assert tenant.oidc is not None and tenant.oidc.private_key_file == tmp_path / "client.key"
    assert tenant.oidc.private_key_algorithm == "ES256" and tenant.oidc.private_key_id == "k1"
    found = errors_of(TENANT + "  client_auth: private_key_jwt\n  private_key_file: not-a-key.pem\n", tmp_path)
    assert found[0][0] == "oidc.private_key_file" and "not a PEM private key" in found[0][1]
    found = errors_of(TENANT + "  client_auth: private_key_jwt\n", tmp_path)
    assert found[0][0] == "oidc.private_key_file"


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("  client_auth: none\n  signing_algorithms: [none]\n", "oidc.signing_algorithms[0]", "never allowed"),
    ("  client_auth: none\n  signing_algorithms: [HS256]\n", "oidc.signing_algorithms[0]", "client_secret_basic"),
    ("  client_auth: private_key_jwt\n  private_key_file: x.key\n  signing_algorithms: [HS512]\n",
     "oidc.signing_algorithms[0]", "client_secret_basic"),
    ("  client_auth: none\n  signing_algorithms: [RS1]\n", "oidc.signing_algorithms[0]", "must be one of"),
    ("  client_auth: none\n  scopes: [email, profile]\n", "oidc.scopes", "openid"),
    ("  client_auth: none\n  scopes: [openid, 'bad scope']\n", "oidc.scopes[1]", "not a valid OAuth scope"),
    ("  client_auth: none\n  email_claim: sub\n", "oidc.email_claim", "must be one of"),
    ("  client_auth: basic\n", "oidc.client_auth", "must be one of"),
    ("  client_auth: client_secret_basic\n", "oidc.client_secret_env", "exactly one of"),
    ("  client_auth: client_secret_basic\n  client_secret_env: A\n  client_secret_file: b\n",
     "oidc.client_secret_env", "exactly one of"),
    ("  client_auth: none\n  client_secret_env: A\n", "oidc.client_secret_env", "only used with"),
    ("  client_auth: none\n  clock_skew_seconds: 9999\n", "oidc.clock_skew_seconds", ""),
    ("  client_auth: none\n  redirect_uri: ftp://x/cb\n", "oidc.redirect_uri", "http(s)"),
    ("  client_auth: none\n  client_secret: inline\n", "oidc.client_secret", ""),
])
def test_mistakes_are_named_by_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    (tmp_path / "x.key").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    found = errors_of(TENANT + extra, tmp_path)
    assert found[0][0] == key, found
    assert words in found[0][1]


def test_the_issuer_must_be_https_and_the_section_belongs_to_its_protocol(tmp_path: Path) -> None:
    found = errors_of(TENANT.replace("https://login.example", "http://login.example") + "  client_auth: none\n",
                      tmp_path)
    assert found[0][0] == "oidc.issuer" and "https://" in found[0][1]
    found = errors_of(TENANT.replace("protocol: oidc", "protocol: saml2") + "  client_auth: none\n", tmp_path)
    assert any(key == "oidc" and detail.endswith("section only allowed with protocol: oidc") for key, detail in found)
    found = errors_of(TENANT.split("oidc:\n")[0], tmp_path)
    assert found[0][0] == "oidc"
