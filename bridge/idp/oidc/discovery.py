"""The OpenID Provider Configuration document (OpenID Connect Discovery 1.0 sections 3 and 4), parsed.

Pure: the document's bytes and the issuer the tenant configured in, a frozen
:class:`ProviderMetadata` out, or :class:`~bridge.errors.IdpProtocolError`.
The issuer the document names must be the configured one exactly (section 4.3):
otherwise a provider could hand out endpoints and keys for another issuer,
and ID tokens would be checked against the wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.errors import IdpProtocolError
from bridge.idp.oidc.jsondoc import load_object, optional_strings, optional_text, required_text

WELL_KNOWN = "/.well-known/openid-configuration"
_WHAT = "the OpenID provider configuration"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderMetadata:
    """What the bridge uses of a provider's configuration; list members hold the document's values or defaults."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    id_token_signing_alg_values_supported: tuple[str, ...]
    token_endpoint_auth_methods_supported: tuple[str, ...]
    grant_types_supported: tuple[str, ...]
    code_challenge_methods_supported: tuple[str, ...]  # empty: the provider does not say (RFC 8414 section 2)
    response_types_supported: tuple[str, ...]
    # RFC 9207: the provider puts "iss" in every authorization response; one without it is then refused.
    authorization_response_iss_parameter_supported: bool = False


def discovery_url(issuer: str) -> str:
    """Where the document is: the issuer without its trailing "/", then the well-known path (section 4.1)."""
    return issuer.rstrip("/") + WELL_KNOWN


def _https(url: str, name: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise IdpProtocolError(f"{_WHAT}: {name} is not a valid URL") from exc
    if parts.scheme != "https" or not parts.hostname or parts.fragment:
        raise IdpProtocolError(f"{_WHAT}: {name} must be an https URL without a fragment, got {url[:200]!r}")
    return url


def _endpoint(doc: Mapping[str, object], name: str, *, required: bool) -> str | None:
    value = required_text(doc, name, what=_WHAT) if required else optional_text(doc, name, what=_WHAT)
    return None if value is None else _https(value, name)


def parse_provider_metadata(body: bytes, *, issuer: str) -> ProviderMetadata:
    """Read the document served at :func:`discovery_url`; it must name ``issuer`` exactly (section 4.3)."""
    doc = load_object(body, what=_WHAT)
    named = required_text(doc, "issuer", what=_WHAT)
    if named != issuer:
        raise IdpProtocolError(f"{_WHAT} names issuer {named[:200]!r}, but the tenant's issuer is {issuer!r} "
                               "(they must be identical: OpenID Connect Discovery 1.0 section 4.3)")
    _https(named, "issuer")

    def strings(name: str, default: tuple[str, ...] | None) -> tuple[str, ...]:
        value = optional_strings(doc, name, what=_WHAT)
        if value is None:
            if default is None:
                raise IdpProtocolError(f"{_WHAT}: required member {name!r} is missing")
            return default
        return value

    authorization = _endpoint(doc, "authorization_endpoint", required=True)
    token = _endpoint(doc, "token_endpoint", required=True)
    jwks = _endpoint(doc, "jwks_uri", required=True)
    assert authorization is not None and token is not None and jwks is not None
    return ProviderMetadata(
        issuer=named,
        authorization_endpoint=authorization,
        token_endpoint=token,
        jwks_uri=jwks,
        userinfo_endpoint=_endpoint(doc, "userinfo_endpoint", required=False),
        id_token_signing_alg_values_supported=strings("id_token_signing_alg_values_supported", None),
        # Defaults where the document may omit a member (Discovery 1.0 section 3).
        token_endpoint_auth_methods_supported=strings("token_endpoint_auth_methods_supported",
                                                      ("client_secret_basic",)),
        grant_types_supported=strings("grant_types_supported", ("authorization_code", "implicit")),
        code_challenge_methods_supported=strings("code_challenge_methods_supported", ()),
        response_types_supported=strings("response_types_supported", None),
        authorization_response_iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
        is True,
    )
