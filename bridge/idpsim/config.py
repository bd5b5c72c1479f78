"""The simulator's directory and settings, loaded from a YAML users file.

The passwords in that file are the simulated IdP's own directory, so they
are kept in memory; they are never logged and never shown in a ``repr``.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import yaml

from bridge.errors import ConfigError
from bridge.idpsim.ecp.settings import EcpSettings, parse_ecp_settings
from bridge.idpsim.oidc.settings import OidcSettings, parse_oidc_settings
from bridge.idpsim.yamlchecks import mapping, no_unknown, opt_str, req_str

DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)
_TOP_KEYS = frozenset({"issuer", "relying_parties", "users", "signing", "token_lifetime_seconds", "ecp", "oidc"})
_USER_KEYS = frozenset(
    {
        "username",
        "upn",
        "email",
        "password",
        "display_name",
        "enabled",
        "groups",
        "mfa",
        "totp_secret",
        "password_logins",
    }
)
_SIGNING_KEYS = frozenset({"key", "cert", "algorithm"})
# Compared against when the user is unknown, so both paths cost one compare_digest.
_DUMMY_PASSWORD = b"\x00idp-sim-no-such-user\x00"


class SigningAlgorithmName(enum.Enum):
    """Token signature algorithm as written in the users file."""

    RSA_SHA256 = "rsa-sha256"
    RSA_SHA1 = "rsa-sha1"


class MfaMethod(enum.Enum):
    """Second factor the browser sign-in asks for (the password paths never can)."""

    TOTP = "totp"  # RFC 6238, six digits, 30 s steps: what authenticator apps speak


class PasswordLogins(enum.Enum):
    """What the password-only paths (WS-Trust, ECP) do once the password is right."""

    ALLOWED = "allowed"
    # An additional-authentication rule covers the account: AD FS and Shibboleth then refuse
    # every active (password-only) login with their "MFA required" answer; only a browser works.
    MFA_REQUIRED = "mfa_required"


@dataclass(frozen=True, kw_only=True, slots=True)
class SimUser:
    """One account of the simulated directory."""

    username: str
    upn: str
    email: str
    password: str = field(repr=False)
    display_name: str
    enabled: bool = True
    groups: tuple[str, ...] = ()
    mfa: MfaMethod | None = None
    totp_secret: str | None = field(default=None, repr=False)
    password_logins: PasswordLogins = PasswordLogins.ALLOWED

    @property
    def password_logins_need_mfa(self) -> bool:
        return self.password_logins is PasswordLogins.MFA_REQUIRED

    def totp(self) -> pyotp.TOTP | None:
        """The user's TOTP generator, or None when the browser sign-in asks no second factor."""
        if self.mfa is not MfaMethod.TOTP or self.totp_secret is None:
            return None
        return pyotp.TOTP(self.totp_secret)

    def otp_is(self, code: str) -> bool:
        """Whether ``code`` is the current TOTP (one step of clock drift either way, as apps need)."""
        generator = self.totp()
        if generator is None:
            return False
        digits = code.strip().replace(" ", "")
        if len(digits) != generator.digits or not digits.isdigit():
            return False
        return generator.verify(digits, valid_window=1)

    def matches(self, login: str) -> bool:
        """AD FS accepts the UPN, the mail address or the bare account name."""
        wanted = login.strip().casefold()
        return wanted in {self.upn.casefold(), self.email.casefold(), self.username.casefold()}

    def password_is(self, candidate: str) -> bool:
        return hmac.compare_digest(self.password.encode("utf-8"), candidate.encode("utf-8"))


@dataclass(frozen=True, kw_only=True, slots=True)
class SigningSettings:
    """Token-signing key and certificate given explicitly instead of generated ones."""

    key_file: Path | None = None
    cert_file: Path | None = None
    algorithm: SigningAlgorithmName = SigningAlgorithmName.RSA_SHA256


@dataclass(frozen=True, kw_only=True, slots=True)
class SimConfig:
    """Everything the simulator needs besides its keys directory."""

    issuer: str | None = None
    relying_parties: tuple[str, ...] = ()
    users: tuple[SimUser, ...] = ()
    signing: SigningSettings = SigningSettings()
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME
    source: str = ""
    ecp: EcpSettings = field(default_factory=EcpSettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)

    def with_oidc_redirect_uris(self, client_id: str, *uris: str) -> SimConfig:
        """A copy where OIDC client ``client_id`` also accepts ``uris`` (KeyError if no such client)."""
        return dataclasses.replace(self, oidc=self.oidc.with_redirect_uris(client_id, *uris))

    def resolved(self, host: str, port: int) -> SimConfig:
        """Fill the default issuer from the address actually bound."""
        if self.issuer is not None:
            return self
        shown = f"[{host}]" if ":" in host else host
        return dataclasses.replace(self, issuer=f"http://{shown}:{port}/adfs/services/trust")

    def find_user(self, login: str) -> SimUser | None:
        for user in self.users:
            if user.matches(login):
                return user
        return None

    def authenticate(self, login: str, password: str) -> SimUser | None:
        """The user if the password is right, else None (same work either way)."""
        user = self.find_user(login)
        if user is None:
            hmac.compare_digest(_DUMMY_PASSWORD, password.encode("utf-8"))
            return None
        return user if user.password_is(password) else None

    def accepts_scope(self, applies_to: str) -> bool:
        return applies_to in self.relying_parties


def load_config(path: Path) -> SimConfig:
    """Read and check a users file; every problem is a ConfigError naming the key."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read users file ({exc.strerror})", file=name) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = None
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line = int(mark.line) + 1
        raise ConfigError("not valid YAML", file=name, line=line) from exc
    return parse_config(data, source=name, base_dir=path.parent)


def parse_config(data: object, *, source: str = "", base_dir: Path | None = None) -> SimConfig:
    """Build a SimConfig from already-parsed YAML data."""
    top = mapping(data, source, "(top level)")
    no_unknown(top, _TOP_KEYS, source, "")
    issuer = opt_str(top, "issuer", source, "")
    relying = top.get("relying_parties", [])
    if not isinstance(relying, list) or not all(isinstance(r, str) and r for r in relying):
        raise ConfigError("must be a list of non-empty strings", file=source, key="relying_parties")
    users_raw = top.get("users", [])
    if not isinstance(users_raw, list):
        raise ConfigError("must be a list", file=source, key="users")
    users = tuple(_user(u, source, f"users[{i}]") for i, u in enumerate(users_raw))
    seen: set[str] = set()
    for i, user in enumerate(users):
        for login in {user.upn.casefold(), user.email.casefold(), user.username.casefold()}:
            if login in seen:
                raise ConfigError(f"login {login!r} is used twice", file=source, key=f"users[{i}]")
            seen.add(login)
    lifetime_raw = top.get("token_lifetime_seconds", int(DEFAULT_TOKEN_LIFETIME.total_seconds()))
    if isinstance(lifetime_raw, bool) or not isinstance(lifetime_raw, int) or lifetime_raw <= 0:
        raise ConfigError("must be a positive integer", file=source, key="token_lifetime_seconds")
    return SimConfig(
        issuer=issuer,
        relying_parties=tuple(relying),
        users=users,
        signing=_signing(top.get("signing"), source, base_dir),
        token_lifetime=timedelta(seconds=lifetime_raw),
        source=source,
        ecp=parse_ecp_settings(top.get("ecp"), source=source, base_dir=base_dir),
        oidc=parse_oidc_settings(top.get("oidc"), source=source, base_dir=base_dir),
    )






def _user(raw: object, source: str, where: str) -> SimUser:
    data = mapping(raw, source, where)
    prefix = f"{where}."
    no_unknown(data, _USER_KEYS, source, prefix)
    upn = req_str(data, "upn", source, prefix)
    if "@" not in upn:
        raise ConfigError("must look like name@domain", file=source, key=f"{prefix}upn")
    password = data.get("password")
    if not isinstance(password, str) or not password:
        # The message never carries the value.
        raise ConfigError("must be a non-empty string", file=source, key=f"{prefix}password")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("must be true or false", file=source, key=f"{prefix}enabled")
    groups = data.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ConfigError("must be a list of non-empty strings", file=source, key=f"{prefix}groups")
    mfa, totp_secret = _mfa(data, source, prefix)
    logins_raw = data.get("password_logins", PasswordLogins.ALLOWED.value)
    try:
        password_logins = PasswordLogins(logins_raw)
    except ValueError as exc:
        choices = " or ".join(m.value for m in PasswordLogins)
        raise ConfigError(f"must be {choices}", file=source, key=f"{prefix}password_logins") from exc
    return SimUser(
        username=opt_str(data, "username", source, prefix) or upn.split("@", 1)[0],
        upn=upn,
        email=opt_str(data, "email", source, prefix) or upn,
        password=password,
        display_name=opt_str(data, "display_name", source, prefix) or upn.split("@", 1)[0],
        enabled=enabled,
        groups=tuple(groups),
        mfa=mfa,
        totp_secret=totp_secret,
        password_logins=password_logins,
    )


def _mfa(data: Mapping[str, Any], source: str, prefix: str) -> tuple[MfaMethod | None, str | None]:
    """``mfa`` and its ``totp_secret``; a secret no authenticator app could share is refused at load."""
    raw = data.get("mfa")
    secret = data.get("totp_secret")
    if raw is None:
        if secret is not None:
            raise ConfigError("is only allowed with mfa: totp", file=source, key=f"{prefix}totp_secret")
        return None, None
    try:
        method = MfaMethod(raw)
    except ValueError as exc:
        raise ConfigError("must be totp", file=source, key=f"{prefix}mfa") from exc
    if secret is None:
        raise ConfigError("is required with mfa: totp", file=source, key=f"{prefix}totp_secret")
    # The messages never carry the secret.
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError("must be a base32 string", file=source, key=f"{prefix}totp_secret")
    normalized = "".join(secret.split()).upper()
    try:
        pyotp.TOTP(normalized).byte_secret()
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            "must be valid base32 of at least 112 bits (e.g. 32 characters A-Z, 2-7)",
            file=source,
            key=f"{prefix}totp_secret",
        ) from exc
    return method, normalized


def _signing(raw: object, source: str, base_dir: Path | None) -> SigningSettings:
    if raw is None:
        return SigningSettings()
    data = mapping(raw, source, "signing")
    no_unknown(data, _SIGNING_KEYS, source, "signing.")
    key = opt_str(data, "key", source, "signing.")
    cert = opt_str(data, "cert", source, "signing.")
    if (key is None) != (cert is None):
        raise ConfigError("key and cert must be given together", file=source, key="signing")
    algorithm_raw = opt_str(data, "algorithm", source, "signing.") or SigningAlgorithmName.RSA_SHA256.value
    try:
        algorithm = SigningAlgorithmName(algorithm_raw)
    except ValueError as exc:
        raise ConfigError("must be rsa-sha256 or rsa-sha1", file=source, key="signing.algorithm") from exc
    base = base_dir or Path()
    return SigningSettings(
        key_file=None if key is None else base / key,
        cert_file=None if cert is None else base / cert,
        algorithm=algorithm,
    )
