"""Client authentication at the token endpoint, and the authorization request with PKCE derived from the state."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt
from joserfc.jwk import ECKey

from bridge.config import OidcClientAuth, OidcConfig
from bridge.errors import IdpRejectedRequest
from bridge.idp.oidc.authorize import authorization_url, code_challenge, code_verifier
from bridge.idp.oidc.clientauth import ASSERTION_TYPE, ClientCredentials, basic_authorization, load_signing_key
from tests.keys import make_key_and_cert

TOKEN_URL = "https://idp.example/token"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def config(**values: object) -> OidcConfig:
    return OidcConfig(issuer="https://idp.example", client_id="my client:1", **values)  # type: ignore[arg-type]


def test_basic_form_encodes_id_and_secret_before_joining() -> None:
    header = basic_authorization("my client:1", "p@ss:w%rd +/é")
    raw = base64.b64decode(header.removeprefix("Basic ")).decode()
    client_id, _, secret = raw.partition(":")
    assert raw.count(":") == 1 and (unquote_plus(client_id), unquote_plus(secret)) == ("my client:1", "p@ss:w%rd +/é")
    assert client_id == "my+client%3A1"


async def test_secret_from_the_environment_and_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", "  s3cret\n")
    creds = ClientCredentials(config(client_auth=OidcClientAuth.CLIENT_SECRET_BASIC,
                                     client_secret_env="OIDC_TEST_SECRET"))
    auth = await creds.for_token_request(TOKEN_URL, now=NOW)
    assert auth.headers["Authorization"] == basic_authorization("my client:1", "s3cret") and auth.form == {}
    assert "s3cret" not in repr(auth)
    monkeypatch.delenv("OIDC_TEST_SECRET")
    with pytest.raises(IdpRejectedRequest) as info:
        await ClientCredentials(config(client_auth=OidcClientAuth.CLIENT_SECRET_BASIC,
                                       client_secret_env="OIDC_TEST_SECRET")).secret()
    assert "OIDC_TEST_SECRET" in info.value.detail


async def test_secret_from_a_file_read_once(tmp_path: Path) -> None:
    file = tmp_path / "secret"
    file.write_text("from-file\n")
    creds = ClientCredentials(config(client_auth=OidcClientAuth.CLIENT_SECRET_BASIC, client_secret_file=file))
    assert await creds.secret() == "from-file"
    file.write_text("changed\n")
    assert await creds.secret() == "from-file"
    (tmp_path / "empty").write_text("\n")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(IdpRejectedRequest) as info:
            await ClientCredentials(config(client_auth=OidcClientAuth.CLIENT_SECRET_BASIC,
                                           client_secret_file=path)).secret()
        assert str(path) in info.value.detail


async def test_the_public_client_sends_its_id_in_the_form() -> None:
    creds = ClientCredentials(config(client_auth=OidcClientAuth.NONE))
    auth = await creds.for_token_request(TOKEN_URL, now=NOW)
    assert auth.form == {"client_id": "my client:1"} and auth.headers == {} and await creds.secret() is None


async def test_private_key_jwt_assertion(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    file = tmp_path / "client.key"
    file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    creds = ClientCredentials(config(client_auth=OidcClientAuth.PRIVATE_KEY_JWT, private_key_file=file,
                                     private_key_id="k1", private_key_algorithm="ES256"))
    auth = await creds.for_token_request(TOKEN_URL, now=NOW)
    assert auth.form["client_assertion_type"] == ASSERTION_TYPE and auth.form["client_id"] == "my client:1"
    public = ECKey.import_key(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    token = jwt.decode(auth.form["client_assertion"], public, algorithms=["ES256"])
    assert token.header == {"alg": "ES256", "typ": "JWT", "kid": "k1"}
    c = token.claims
    assert (c["iss"], c["sub"], c["aud"]) == ("my client:1", "my client:1", TOKEN_URL)
    assert c["exp"] - c["iat"] == 60 and c["iat"] == int(NOW.timestamp()) and len(c["jti"]) >= 32
    again = await creds.for_token_request(TOKEN_URL, now=NOW)
    assert jwt.decode(again.form["client_assertion"], public, algorithms=["ES256"]).claims["jti"] != c["jti"]


def test_a_key_that_does_not_fit_the_algorithm_names_the_file() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert load_signing_key(ed, algorithm="EdDSA", shown="ed.pem").is_private
    with pytest.raises(IdpRejectedRequest) as info:
        load_signing_key(ed, algorithm="RS256", shown="ed.pem")
    assert "ed.pem" in info.value.detail
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(IdpRejectedRequest):
        load_signing_key(p384, algorithm="ES256", shown="p384.pem")


# --- the authorization request ----------------------------------------------------------------


def test_the_verifier_is_derived_from_the_state_and_the_challenge_is_s256() -> None:
    verifier = code_verifier(b"k" * 32, "state-1")
    assert len(verifier) == 43 and verifier == code_verifier(b"k" * 32, "state-1")
    assert verifier != code_verifier(b"k" * 32, "state-2") != code_verifier(b"j" * 32, "state-1")
    digest = hashlib.sha256(verifier.encode()).digest()
    assert code_challenge(verifier) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # RFC 7636 Appendix B's example.
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_the_authorization_url_keeps_the_endpoint_query() -> None:
    url = authorization_url("https://idp.example/auth?p=B2C_1_signin&client_id=theirs", client_id="c1",
                            redirect_uri="https://bridge.example/oidc/t/callback", scopes=("openid", "email"),
                            state="st", nonce="no", challenge="ch", login_hint="a@b.example")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "idp.example", "/auth")
    assert query == {"p": ["B2C_1_signin"], "client_id": ["c1"], "response_type": ["code"],
                     "redirect_uri": ["https://bridge.example/oidc/t/callback"], "scope": ["openid email"],
                     "state": ["st"], "nonce": ["no"], "code_challenge": ["ch"], "code_challenge_method": ["S256"],
                     "login_hint": ["a@b.example"]}
    assert "login_hint" not in authorization_url("https://idp.example/auth", client_id="c", redirect_uri="r",
                                                 scopes=("openid",), state="s", nonce="n", challenge="c")


async def test_a_client_certificate_names_the_key_by_its_thumbprints(tmp_path: Path) -> None:
    """Entra ID finds a certificate credential by x5t#S256 / x5t (RFC 7515 4.1.7-8), so both are in the header."""
    key_pem, cert_pem = make_key_and_cert("bridge-client")
    (tmp_path / "client.key").write_bytes(key_pem)
    (tmp_path / "client.pem").write_bytes(cert_pem)
    credentials = ClientCredentials(config(client_auth=OidcClientAuth.PRIVATE_KEY_JWT,
                                           private_key_file=tmp_path / "client.key",
                                           client_certificate_file=tmp_path / "client.pem"))
    auth = await credentials.for_token_request(TOKEN_URL, now=datetime.now(UTC))
    segment = auth.form["client_assertion"].split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert header["x5t#S256"] == b64(hashlib.sha256(der).digest())
    assert header["x5t"] == b64(hashlib.sha1(der).digest())
    assert header["alg"] == "RS256"


def b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
