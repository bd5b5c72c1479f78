"""Settings of the simulated ECP IdP: start-up defaults plus the run-time controls.

:class:`EcpSettings` is what the users file (or the CLI) fixes at start-up;
:class:`EcpControls` is the mutable copy the simulator consults on every login,
changed through ``POST /_sim/ecp`` so tests and technicians can switch modes
without a restart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import ConfigError, RequestError

DEFAULT_MISCHIEF_SUBJECT = "mallory@example.com"
DEFAULT_REALM = "idp-sim ECP"
_E = TypeVar("_E", bound=enum.Enum)
_SETTINGS_KEYS = frozenset(
    {
        "sign_assertion",
        "sign_response",
        "encrypt_assertion",
        "encryption_algorithm",
        "auth_failure",
        "trust_any_sp",
        "sp_metadata",
        "realm",
    }
)
_TOGGLES = ("sign_assertion", "sign_response", "encrypt_assertion", "trust_any_sp")


class AuthFailureMode(enum.Enum):
    """How a wrong password (or an unknown user) is answered: the dialects real ECP IdPs speak."""

    HTTP_401 = "http-401"  # Shibboleth's container and Keycloak: the Basic challenge again
    HTTP_401_FAULT = "http-401-fault"  # 401 around a SOAP fault "Authentication failed"
    HTTP_403 = "http-403"  # 403 with a short text page (a container or proxy refusing the user)
    HTTP_403_FAULT = "http-403-fault"  # 403 around a SOAP fault "Authentication failed"
    SAML_STATUS = "saml-status"  # Responder / AuthnFailed (Shibboleth's status mapping)
    REQUESTER_AUTHN_FAILED = "requester-authn-failed"  # Requester / AuthnFailed
    UNKNOWN_PRINCIPAL = "unknown-principal"  # Requester / UnknownPrincipal
    NO_PASSIVE = "no-passive"  # Responder / NoPassive (Keycloak forces IsPassive on ECP)
    REQUEST_DENIED = "request-denied"  # Responder / RequestDenied (Keycloak's status for untranslated errors)
    WRONGUSERPASS = "wronguserpass"  # Responder, no second-level code, SimpleSAMLphp's WRONGUSERPASS message
    RESPONDER_ONLY = "responder-only"  # Responder, no second-level code, no message: nothing to classify by


class EncryptionAlgorithm(enum.Enum):
    """Data-encryption algorithm of EncryptedAssertion (the key is always wrapped with RSA-OAEP)."""

    AES128_GCM = "aes128-gcm"  # Shibboleth IdP 4/5 default
    AES256_GCM = "aes256-gcm"
    AES128_CBC = "aes128-cbc"  # Shibboleth IdP 2/3 default

    @property
    def uri(self) -> str:
        """XML Encryption 1.1 algorithm identifier (xmlenc-core1 section 5.2)."""
        if self is EncryptionAlgorithm.AES128_CBC:
            return "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
        return f"http://www.w3.org/2009/xmlenc11#{self.value}"

    @property
    def session_key(self) -> str:
        """Session key type as xmlsec1's ``--session-key`` names it."""
        return "aes-256" if self is EncryptionAlgorithm.AES256_GCM else "aes-128"


class EcpMischief(enum.Enum):
    """Broken or forged answers a relying party must refuse (same ideas as the AD FS side's Mischief)."""

    WRONG_IN_RESPONSE_TO = "wrong-in-response-to"  # InResponseTo names another request
    WRONG_DESTINATION = "wrong-destination"  # Response Destination / Recipient are another ACS
    UNSIGNED = "unsigned"  # no signature anywhere
    WRONG_KEY = "wrong-key"  # signed with a key the metadata does not name
    EXPIRED = "expired"  # properly signed, every time in the past
    WRONG_AUDIENCE = "wrong-audience"  # properly signed, Audience is another SP
    WRAP = "wrap"  # unsigned forgery for the user before a signed assertion for mischief_subject
    TAMPERED_RESPONSE = "tampered-response"  # the Response changed after it was signed; the assertion intact


@dataclass(frozen=True, kw_only=True, slots=True)
class EcpSettings:
    """Start-up configuration of the ECP IdP (the ``ecp:`` section of the users file)."""

    sign_assertion: bool = True
    sign_response: bool = False
    encrypt_assertion: bool = False
    encryption_algorithm: EncryptionAlgorithm = EncryptionAlgorithm.AES128_GCM
    auth_failure: AuthFailureMode = AuthFailureMode.HTTP_401
    trust_any_sp: bool = False
    sp_metadata_files: tuple[Path, ...] = ()
    realm: str = DEFAULT_REALM


@dataclass(kw_only=True, slots=True)
class EcpControls:
    """Mutable on purpose: the run-time overrides, starting from :class:`EcpSettings`."""

    sign_assertion: bool
    sign_response: bool
    encrypt_assertion: bool
    encryption_algorithm: EncryptionAlgorithm
    auth_failure: AuthFailureMode
    trust_any_sp: bool
    mischief: EcpMischief | None = None
    mischief_subject: str = DEFAULT_MISCHIEF_SUBJECT
    _defaults: EcpSettings = field(default_factory=EcpSettings, repr=False)

    @classmethod
    def from_settings(cls, settings: EcpSettings) -> EcpControls:
        return cls(
            sign_assertion=settings.sign_assertion,
            sign_response=settings.sign_response,
            encrypt_assertion=settings.encrypt_assertion,
            encryption_algorithm=settings.encryption_algorithm,
            auth_failure=settings.auth_failure,
            trust_any_sp=settings.trust_any_sp,
            _defaults=settings,
        )

    def snapshot(self) -> dict[str, object]:
        """JSON view for ``GET /_sim/ecp``."""
        return {
            "sign_assertion": self.sign_assertion,
            "sign_response": self.sign_response,
            "encrypt_assertion": self.encrypt_assertion,
            "encryption_algorithm": self.encryption_algorithm.value,
            "auth_failure": self.auth_failure.value,
            "trust_any_sp": self.trust_any_sp,
            "mischief": None if self.mischief is None else self.mischief.value,
            "mischief_subject": self.mischief_subject,
        }

    def apply_control(self, body: object) -> None:
        """Apply a ``POST /_sim/ecp`` JSON body; all-or-nothing, RequestError on any bad field."""
        if not isinstance(body, dict):
            raise RequestError("control body must be a JSON object")
        allowed = {*_TOGGLES, "encryption_algorithm", "auth_failure", "mischief", "mischief_subject", "reset"}
        unknown = sorted(str(k) for k in set(body) - allowed)
        if unknown:
            raise RequestError(f"unknown control field(s): {', '.join(unknown)}")
        fresh = EcpControls.from_settings(self._defaults)
        start = fresh if body.get("reset") is True else self
        new = EcpControls(
            sign_assertion=start.sign_assertion,
            sign_response=start.sign_response,
            encrypt_assertion=start.encrypt_assertion,
            encryption_algorithm=start.encryption_algorithm,
            auth_failure=start.auth_failure,
            trust_any_sp=start.trust_any_sp,
            mischief=start.mischief,
            mischief_subject=start.mischief_subject,
            _defaults=self._defaults,
        )
        for name in _TOGGLES:
            if name in body:
                if not isinstance(body[name], bool):
                    raise RequestError(f"{name} must be true or false")
                setattr(new, name, body[name])
        if "encryption_algorithm" in body:
            new.encryption_algorithm = _enum(EncryptionAlgorithm, body["encryption_algorithm"], "encryption_algorithm")
        if "auth_failure" in body:
            new.auth_failure = _enum(AuthFailureMode, body["auth_failure"], "auth_failure")
        if "mischief" in body:
            raw = body["mischief"]
            new.mischief = None if raw is None else _enum(EcpMischief, raw, "mischief")
        if "mischief_subject" in body:
            subject = body["mischief_subject"]
            if not isinstance(subject, str) or "@" not in subject:
                raise RequestError("mischief_subject must be an address like name@domain")
            new.mischief_subject = subject
        for name in (*_TOGGLES, "encryption_algorithm", "auth_failure", "mischief", "mischief_subject"):
            setattr(self, name, getattr(new, name))


def _enum(kind: type[_E], raw: object, name: str) -> _E:
    try:
        return kind(raw)
    except ValueError as exc:
        choices = ", ".join(str(member.value) for member in kind)
        raise RequestError(f"{name} must be one of: {choices}") from exc


def parse_ecp_settings(data: object, *, source: str = "", base_dir: Path | None = None) -> EcpSettings:
    """Build EcpSettings from the parsed ``ecp:`` YAML section (None: defaults)."""
    if data is None:
        return EcpSettings()
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError("must be a mapping", file=source, key="ecp")
    section: Mapping[str, Any] = data
    for key in section:
        if key not in _SETTINGS_KEYS:
            raise ConfigError("unknown key", file=source, key=f"ecp.{key}")
    toggles: dict[str, bool] = {}
    for name in _TOGGLES:
        value = section.get(name, getattr(EcpSettings(), name))
        if not isinstance(value, bool):
            raise ConfigError("must be true or false", file=source, key=f"ecp.{name}")
        toggles[name] = value
    files_raw = section.get("sp_metadata", [])
    if not isinstance(files_raw, list) or not all(isinstance(f, str) and f for f in files_raw):
        raise ConfigError("must be a list of file names", file=source, key="ecp.sp_metadata")
    realm = section.get("realm", DEFAULT_REALM)
    if not isinstance(realm, str) or not realm or '"' in realm:
        raise ConfigError("must be a non-empty string without quotes", file=source, key="ecp.realm")
    base = base_dir or Path()
    return EcpSettings(
        sign_assertion=toggles["sign_assertion"],
        sign_response=toggles["sign_response"],
        encrypt_assertion=toggles["encrypt_assertion"],
        trust_any_sp=toggles["trust_any_sp"],
        encryption_algorithm=_config_enum(
            EncryptionAlgorithm,
            section.get("encryption_algorithm", "aes128-gcm"),
            source,
            "encryption_algorithm",
        ),
        auth_failure=_config_enum(AuthFailureMode, section.get("auth_failure", "http-401"), source, "auth_failure"),
        sp_metadata_files=tuple(base / f for f in files_raw),
        realm=realm,
    )


def _config_enum(kind: type[_E], raw: object, source: str, name: str) -> _E:
    try:
        return kind(raw)
    except ValueError as exc:
        choices = ", ".join(str(member.value) for member in kind)
        raise ConfigError(f"must be one of: {choices}", file=source, key=f"ecp.{name}") from exc
