"""The users file's ``oidc:`` section: what it accepts, and the ConfigError (file, key) for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.errors import ConfigError
from bridge.idpsim.config import SimConfig, parse_config
from bridge.idpsim.oidc.settings import ClientAuthMethod, SigningAlgorithm, parse_oidc_settings
from bridge.idpsim.state import OidcDialect, SimState

CLIENT = {"client_id": "c1", "auth_method": "client_secret_basic", "client_secret": "s",
          "redirect_uris": ["https://rp.example/cb"]}


def _oidc(**section: object) -> SimConfig:
    return parse_config({"users": [], "oidc": section}, source="users.yaml")


def test_demo_file_has_the_example_net_client(config: SimConfig) -> None:
    client = config.oidc.client("loginbridge-example-net")
    assert client is not None
    # The bridge's demo tenant signs its client assertions with conf/demo/example-net-client.key.
    assert client.auth_method is ClientAuthMethod.PRIVATE_KEY_JWT and client.public_key_pem is not None
    assert client.redirect_uris == ("http://127.0.0.1:8080/oidc/example-net/callback",)
    assert client.password_grant and client.require_pkce and client.id_token_email
    nina = config.find_user("nina@example.net")
    assert nina is not None and nina.totp() is not None
    assert config.authenticate("oscar@example.net", "oscar-demo-pass") is not None


def test_redirect_uris_can_be_added_for_the_demo(config: SimConfig) -> None:
    moved = config.with_oidc_redirect_uris("loginbridge-example-net", "http://127.0.0.1:18080/oidc/example-net/callback")
    client = moved.oidc.client("loginbridge-example-net")
    assert client is not None and len(client.redirect_uris) == 2
    assert config.oidc.client("loginbridge-example-net").redirect_uris != client.redirect_uris  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        config.with_oidc_redirect_uris("nobody", "https://x.example/cb")


def test_defaults_and_algorithm_choice() -> None:
    settings = _oidc(clients=[CLIENT], signing_algorithm="ES256").oidc
    assert settings.signing_algorithm is SigningAlgorithm.ES256
    assert settings.issuer is None and not settings.password_grant_enabled
    client = settings.client("c1")
    assert client is not None and client.require_pkce and not client.password_grant
    assert parse_config({"users": []}).oidc.clients == ()


def test_private_key_jwt_with_a_pem_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "client.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    data = {"users": [], "oidc": {"clients": [{"client_id": "j", "auth_method": "private_key_jwt",
                                               "public_key_file": "client.pem",
                                               "redirect_uris": ["https://rp.example/cb"]}]}}
    client = parse_config(data, source="u.yaml", base_dir=tmp_path).oidc.client("j")
    assert client is not None and client.public_key_pem is not None


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"surprise": 1}, "oidc.surprise", "unknown key"),
        ({"issuer": "ftp://x"}, "oidc.issuer", "http(s) URL"),
        ({"signing_algorithm": "HS256"}, "oidc.signing_algorithm", "RS256"),
        ({"clients": {}}, "oidc.clients", "must be a list"),
        ({"clients": [{**CLIENT, "auth_method": "magic"}]}, "oidc.clients[0].auth_method", "one of"),
        ({"clients": [{**CLIENT, "client_secret": None}]}, "oidc.clients[0].client_secret", "required"),
        ({"clients": [{**CLIENT, "auth_method": "none"}]}, "oidc.clients[0].client_secret", "not used"),
        ({"clients": [{**CLIENT, "redirect_uris": []}]}, "oidc.clients[0].redirect_uris", "non-empty list"),
        ({"clients": [{**CLIENT, "redirect_uris": ["https://rp.example/cb#frag"]}]},
         "oidc.clients[0].redirect_uris", "fragment"),
        ({"clients": [{**CLIENT, "password_grant": "yes"}]}, "oidc.clients[0].password_grant", "true or false"),
        ({"clients": [{**CLIENT, "client_secret": None, "auth_method": "none", "require_pkce": False}]},
         "oidc.clients[0].require_pkce", "PKCE"),
        ({"clients": [{**CLIENT, "auth_method": "private_key_jwt", "client_secret": None}]},
         "oidc.clients[0].auth_method", "exactly one"),
        ({"clients": [{**CLIENT, "id_token_signed_response_alg": "PS256"}]},
         "oidc.clients[0].id_token_signed_response_alg", "keys' algorithms"),
        ({"clients": [CLIENT, CLIENT]}, "oidc.clients[1]", "used twice"),
    ],
)
def test_mistakes_name_their_key(section: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _oidc(**section)
    assert caught.value.key == key
    assert caught.value.file == "users.yaml"
    assert words in str(caught.value)


def test_the_dialect_is_a_setting_and_what_a_reset_restores(config: SimConfig) -> None:
    assert config.oidc.dialect is OidcDialect.ENTRA  # the demo speaks Entra ID's AADSTS answers
    assert parse_oidc_settings({"dialect": "okta"}).dialect is OidcDialect.OKTA
    with pytest.raises(ConfigError) as bad:
        parse_oidc_settings({"dialect": "ping"})
    assert bad.value.key == "oidc.dialect"
    state = SimState(oidc_dialect=OidcDialect.OKTA, oidc_default_dialect=OidcDialect.OKTA)
    state.apply_control({"oidc_dialect": "keycloak"})
    assert state.oidc_dialect is OidcDialect.KEYCLOAK
    state.apply_control({"reset": True})
    assert state.oidc_dialect is OidcDialect.OKTA
