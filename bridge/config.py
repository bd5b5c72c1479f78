"""Start-up configuration: one main YAML file plus one YAML file per tenant.

The files are read once, validated completely and turned into frozen
dataclasses.  YAML is read through the node API (``yaml.compose``) rather than
``safe_load`` so that every error can name the file, the key path and the line
an administrator has to fix.  Unknown keys are errors, with a suggestion.

Checking goes on past a mistake, so one run names them all: every tenant file,
every section of bridge.yaml and the independent parts of a tenant are checked
on their own (``_Src.part``), every unknown key of a mapping is listed.  The
loader then raises one :class:`~bridge.errors.ConfigErrors`: it reads as the
first mistake, and its ``errors`` hold them all.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import ipaddress
import logging
import os
import re
import secrets
import ssl
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.errors import ConfigError, ConfigErrors, RequestError

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_CONFIG_BYTES = 1024 * 1024
CERT_EXPIRY_WARNING = timedelta(days=30)
MIN_SECRET_BYTES = 32
SIGNATURE_ALGORITHMS = ("rsa-sha256", "rsa-sha512", "rsa-sha1")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_STR_TAG = "tag:yaml.org,2002:str"


class Protocol(enum.Enum):
    WSTRUST = "wstrust"
    SAML2 = "saml2"
    OIDC = "oidc"


class WsTrustVersionSetting(enum.Enum):
    V13 = "1.3"
    V2005 = "2005"
    AUTO = "auto"


class TokenTypeSetting(enum.Enum):
    SAML2 = "saml2"
    SAML11 = "saml11"


@dataclass(frozen=True, kw_only=True, slots=True)
class IdpClientConfig:
    connect_timeout: float
    timeout: float
    max_connections_per_idp: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WsTrustConfig:
    adfs_url: str | None
    endpoint: str | None
    version: WsTrustVersionSetting
    applies_to: str
    token_type: TokenTypeSetting
    issuer: str | None
    signing_certificates: tuple[x509.Certificate, ...]
    federation_metadata: bool
    signature_algorithms: tuple[str, ...]
    clock_skew: timedelta
    subject_claim: str
    ca_file: Path | None
    metadata_refresh: timedelta = timedelta(hours=1)  # FederationMetadata re-read (certificate rollover)
    # SubjectConfirmationData/@Recipient a token may name (when it names one); None: applies_to.
    recipient: str | None = None
    passive_url: str | None = None  # WS-Federation passive endpoint; default {adfs_url}/adfs/ls/ (browser sign-in)


@dataclass(frozen=True, kw_only=True, slots=True)
class Saml2Config:
    metadata_file: Path | None
    metadata_url: str | None
    entity_id: str | None
    ecp_url: str | None
    signing_certificates: tuple[x509.Certificate, ...]
    sp_entity_id: str
    clock_skew: timedelta
    subject_claim: str
    signature_algorithms: tuple[str, ...]
    ca_file: Path | None
    acs_url: str | None = None  # default: {public_url}/saml/{tenant}/acs
    metadata_refresh: timedelta = timedelta(hours=1)
    sign_requests: bool = False  # sign the AuthnRequest with the SP key (IdPs that want it)
    sso_url: str | None = None  # SingleSignOnService (HTTP-Redirect) for browser sign-in; default: from metadata


class OidcClientAuth(enum.Enum):
    """How the bridge authenticates itself at the token endpoint (OpenID Connect Core 1.0 section 9)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name; RFC 6749 2.3.1, secret from env/file
    PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 7523 client assertion signed with our key
    NONE = "none"  # a public client: PKCE only


# JOSE signature algorithms (RFC 7518 section 3.1, RFC 8037) an ID token may be signed with.  "none" never is;
# HMAC (HS*) only for a confidential client with a secret (the secret is the key, OIDC Core 10.1).
OIDC_ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                              "EdDSA")
OIDC_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
OIDC_EMAIL_CLAIMS = ("email", "preferred_username", "upn")


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcConfig:
    """A tenant's OpenID Connect provider (``oidc:``; bridge/idp/oidc, docs/oidc.md).

    The client secret is never in the YAML: ``client_secret_env`` names an environment variable,
    ``client_secret_file`` a file, read when the tenant's client is made.
    """

    issuer: str  # exactly as the provider's discovery document and ID tokens name it
    client_id: str
    client_auth: OidcClientAuth
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    private_key_file: Path | None = None  # PEM, for private_key_jwt
    private_key_id: str | None = None  # the "kid" the provider knows our key by
    private_key_algorithm: str = "RS256"
    # The certificate of that key, when the provider names keys by certificate thumbprint (Entra ID): the client
    # assertion's header then carries x5t#S256 and x5t.
    client_certificate_file: Path | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    email_claim: str = "email"  # email, preferred_username or upn: must equal the platform user's email
    signing_algorithms: tuple[str, ...] = ("RS256",)
    clock_skew: timedelta = timedelta(seconds=300)
    ca_file: Path | None = None
    discovery_refresh: timedelta = timedelta(hours=1)
    jwks_refresh_interval: timedelta = timedelta(seconds=60)  # an unknown "kid" re-reads the JWKS at most this often
    password_grant: bool = False  # the OAuth 2.0 password grant for password prompts (Okta, Keycloak, Entra ROPC)
    redirect_uri: str | None = None  # default: {public_url}/oidc/{tenant}/callback


class DeviceLoginIdentity(enum.Enum):
    """What a device in device-login mode reports for the user it authenticated."""

    EMAIL = "email"
    USERNAME = "username"


@dataclass(frozen=True, kw_only=True, slots=True)
class ThrottleConfig:
    """Lockout protection, kept below the IdP's own lockout threshold.

    Defaults follow AD FS extranet lockout practice: the bridge must give up
    well before the directory locks the account (AD commonly locks after 10
    bad passwords; AD FS extranet lockout is advised below that), so a user
    gets 5 IdP-rejected passwords per 15 minutes through the bridge.
    """

    user_failures: int = 5
    device_failures: int = 20
    source_failures: int = 20
    window: timedelta = timedelta(minutes=15)
    # One hour: a device stuck on an old password then reaches the IdP at most
    # once an hour (far below any lockout threshold), while a new password that
    # the IdP refused during directory replication is not blocked for long.
    stale_password_ttl: timedelta = timedelta(hours=1)
    spray_distinct_users: int = 10
    spray_window: timedelta = timedelta(minutes=5)


AD_USER_FILTER = "(&(objectCategory=person)(objectClass=user))"


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryConfig:
    """A tenant's directory sync over LDAP (``directory:``; bridge/directory, docs/directory.md).

    The bind password is never in the YAML: ``bind_password_env`` names an environment variable,
    ``bind_password_file`` a file; it is read at each sync. TLS is always verified (against
    ``ca_file``, else the system's trust store) and the host name checked.
    """

    url: str  # ldaps://host[:port], or ldap://host[:port] with starttls
    host: str
    port: int
    use_ssl: bool  # ldaps://
    starttls: bool
    ca_file: Path | None
    bind_dn: str
    bind_password_env: str | None = None
    bind_password_file: Path | None = None
    base_dn: str
    user_filter: str = AD_USER_FILTER
    group_dn: str | None = None  # only members of this group (memberOf)
    nested_groups: bool = False  # AD: members of nested groups too (LDAP_MATCHING_RULE_IN_CHAIN)
    email_attribute: str = "mail"
    email_fallback_attribute: str | None = "userPrincipalName"
    username_attribute: str = "sAMAccountName"
    display_name_attribute: str = "displayName"
    # None: AD's userAccountControl bit 2 (ACCOUNTDISABLE); else an LDAP filter matching disabled entries.
    disabled_filter: str | None = None
    page_size: int = 500
    timeout: float = 30.0
    sync_every: timedelta | None = None  # sync_every_minutes; None: only `loginbridge directory sync`


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantConfig:
    id: str
    name: str
    domains: tuple[str, ...]
    protocol: Protocol
    idp_whitelist: tuple[IPNetwork, ...]
    session_ttl: timedelta
    wstrust: WsTrustConfig | None
    saml2: Saml2Config | None
    source: Path
    oidc: OidcConfig | None = None
    device_networks: tuple[IPNetwork, ...] = ()
    device_login_identity: DeviceLoginIdentity = DeviceLoginIdentity.EMAIL
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    directory: DirectoryConfig | None = None  # the directory sync (bridge/directory)
    printer_link_days: int = 90  # how long a personal printer URL works (bridge/state/printlinks.py)
    badge_binding_days: int = 30  # how long a badge bound by phone pairing opens sessions (bridge/state/pairings.py)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryConfig:
    """Where complete print jobs go: a platform HTTPS endpoint, or a local outbox (demo)."""

    url: str | None
    outbox_dir: Path | None
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    ca_file: Path | None = None
    lease_seconds: float = 60.0
    """How long a claimed delivery belongs to its instance without a renewal (renewed every third of it);
    a job of an instance that died is taken over by another one after at most this long."""
    poll_seconds: float = 2.0
    """How often an idle worker looks for jobs that other instances queued but did not deliver."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterConfig:
    """The Print-to-Web IPP printer (its own listener)."""

    enabled: bool
    host: str
    port: int
    name: str
    location: str
    info: str
    max_job_bytes: int
    verification_cache: timedelta
    spool_dir: Path
    delivery: DeliveryConfig
    tls: PrinterTls | None = None
    """``printer.tls``: the listener speaks TLS (ipps) and plain HTTP on its port; None: plain HTTP only."""
    plain_http_from: tuple[IPNetwork, ...] | None = None
    """``printer.plain_http_from``: the clients that may send a password over plain HTTP (ipp://); the others
    are told to use ipps (printers/server.py).  None (no ``tls`` and no such key): anyone, as before TLS;
    with ``tls`` the default is loopback only (:data:`LOOPBACK_NETWORKS`)."""
    dnssd: PrinterDnssd | None = None
    """``printer.dnssd`` with ``enabled: true``: the printer is announced with DNS-SD over multicast DNS
    (printers/dnssd.py); None (the default): not announced."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterTls:
    """The printer's certificate (PEM, the chain after it) and its unencrypted PEM key: a checked pair."""

    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterDnssd:
    """``printer.dnssd`` when enabled: the DNS-SD service instance name and where to announce it."""

    name: str
    """The service instance name clients list (RFC 6763 section 4.1.1: at most 63 bytes of UTF-8)."""
    interfaces: tuple[str, ...] = ()
    """The addresses to announce on, and the addresses announced; empty: every interface (and the
    printer's bound address, or every address of this host when it binds all)."""


LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsoleUser:
    """A technician allowed into the console; only a scrypt hash of the password is configured."""

    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerTimeouts:
    """Both listeners (device API and printer): a request's head must arrive within ``header`` seconds
    (for the JSON endpoints, its small body too); a kept-alive connection idle for ``idle`` seconds is closed."""

    header: float = 10.0
    idle: float = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsoleConfig:
    """The technician console at /console (``loginbridge console hash-password`` makes the hashes)."""

    users: tuple[ConsoleUser, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeConfig:
    source: Path
    listen_host: str
    listen_port: int
    state_dir: Path
    tenants: tuple[TenantConfig, ...]
    hmac_key: bytes = field(repr=False)
    session_ttl: timedelta
    idp_client: IdpClientConfig
    log_level: str
    warnings: tuple[str, ...]
    printer: PrinterConfig | None = None
    audit_file: Path | None = None
    public_url: str = ""  # how IdPs and admins reach the bridge (SP metadata, ACS URLs)
    console: ConsoleConfig | None = None
    listener_timeouts: ListenerTimeouts = field(default_factory=ListenerTimeouts)
    # Load balancers whose X-Forwarded-For is read (both listeners and the console; bridge/forwarded.py).
    # Empty: the client is always the TCP peer.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Where the shared state lives: sqlite:///ABS/PATH (default: loginbridge.db in state_dir) or
    # postgresql://... ; LOGINBRIDGE_STORE_URL overrides it.  May hold a password (from the environment only).
    store_url: str = field(default="", repr=False)
    # Where tenant files are read from (``tenants apply``, SIGHUP) and relative paths of API-made tenants resolve.
    tenants_dir: Path = Path()
    web_return_origins: tuple[str, ...] = ()  # web_signin.return_to: where /v1/web/login may return

    def tenant(self, tenant_id: str) -> TenantConfig:
        """The tenant with this id; an unknown id is a request error listing the known ones."""
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        known = ", ".join(t.id for t in self.tenants) or "none configured"
        raise RequestError(f"unknown tenant {tenant_id!r} (known tenants: {known})")

    def tenant_for_domain(self, domain: str) -> TenantConfig | None:
        """The tenant that claims this email domain (case-insensitive), if any."""
        wanted = domain.strip().lower().rstrip(".")
        for tenant in self.tenants:
            if wanted in tenant.domains:
                return tenant
        return None


# --------------------------------------------------------------------------
# YAML node helpers: every error carries file, key path and line.


class _Recorded(Exception):
    """Ends a part of the configuration whose mistake is already in the errors (not recorded again)."""


@dataclass(frozen=True, slots=True)
class _Src:
    """One YAML file: ``path`` resolves relative paths, ``shown`` is for messages.

    ``errors`` collects the mistakes found so far; the files of one load share one list.
    """

    path: Path
    shown: str
    errors: list[ConfigError] = field(default_factory=list, compare=False, repr=False)

    def err(self, detail: str, key: str = "", node: yaml.Node | None = None) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(detail, file=self.shown, key=key, line=line)

    def record(self, detail: str, key: str = "", node: yaml.Node | None = None) -> None:
        """A mistake that does not stop the part it is found in."""
        self.errors.append(self.err(detail, key, node))

    @contextlib.contextmanager
    def part(self) -> Iterator[None]:
        """One part checked on its own: a ConfigError raised in it is recorded, and checking goes on after it."""
        try:
            yield
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
        except ConfigError as exc:
            self.errors.append(exc)
        except _Recorded:
            pass

    def failed_since(self, count: int) -> bool:
        """Whether a mistake was recorded since ``len(self.errors)`` was ``count``."""
        return len(self.errors) > count

    def resolve(self, raw: str) -> Path:
        """A path named in this file, relative to this file's directory."""
        return Path(os.path.normpath(self.path.parent / Path(raw).expanduser()))


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"value {node.value!r}"


class _Map:
    """A YAML mapping checked against the keys it may hold."""

    def __init__(self, src: _Src, node: yaml.Node, prefix: str, allowed: Collection[str]) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise src.err(f"expected a mapping, got a {_kind(node)}", prefix, node)
        self.src = src
        self.node = node
        self.prefix = prefix
        self.items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self.misspelt: set[str] = set()  # allowed keys an unknown key was taken for ("did you mean ...?")
        # Each bad key is recorded and left out; the rest of the mapping is still checked.
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                src.record("keys must be plain names", prefix, key_node)
                continue
            name = key_node.value
            if name in self.items:
                src.record("duplicate key", self.key(name), key_node)
                continue
            if name not in allowed:
                close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else "allowed: " + ", ".join(sorted(allowed))
                src.record(f"unknown key ({hint})", self.key(name), key_node)
                self.misspelt.update(close)
                continue
            self.items[name] = (key_node, value_node)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str) -> yaml.Node | None:
        """The value node, or None when absent or explicitly null."""
        item = self.items.get(name)
        if item is None or (isinstance(item[1], yaml.ScalarNode) and item[1].tag.endswith(":null")):
            return None
        return item[1]

    def require(self, name: str) -> yaml.Node:
        node = self.get(name)
        if node is None:
            if name in self.misspelt and name not in self.items:
                raise _Recorded  # its "unknown key (did you mean NAME?)" says it already
            where = self.items[name][0] if name in self.items else self.node
            raise self.src.err("missing required key", self.key(name), where)
        return node

    def absent(self, name: str) -> bool:
        """Not given, and not misspelt either (a misspelt key is reported already, as unknown)."""
        return self.get(name) is None and name not in self.misspelt

    def sub(self, name: str, allowed: Collection[str]) -> _Map | None:
        node = self.get(name)
        return None if node is None else _Map(self.src, node, self.key(name), allowed)


def _scalar(src: _Src, node: yaml.Node, key: str) -> object:
    if not isinstance(node, yaml.ScalarNode):
        raise src.err(f"expected a single value, got a {_kind(node)}", key, node)
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except yaml.YAMLError as exc:
        raise src.err(f"bad value ({getattr(exc, 'problem', None) or exc})", key, node) from exc


def _str(m: _Map, name: str, node: yaml.Node) -> str:
    value = _scalar(m.src, node, m.key(name))
    if not isinstance(value, str) or not value.strip():
        raise m.src.err(f"expected text, got {value!r}", m.key(name), node)
    return value.strip()


def _int(m: _Map, name: str, node: yaml.Node, low: int, high: int) -> int:
    value = _scalar(m.src, node, m.key(name))
    if isinstance(value, bool) or not isinstance(value, int):
        raise m.src.err(f"expected a whole number, got {value!r}", m.key(name), node)
    if not low <= value <= high:
        raise m.src.err(f"must be between {low} and {high}, got {value}", m.key(name), node)
    return value


def _number(m: _Map, name: str, node: yaml.Node, low: float, high: float) -> float:
    value = _scalar(m.src, node, m.key(name))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise m.src.err(f"expected a number, got {value!r}", m.key(name), node)
    if not low < value <= high:
        raise m.src.err(f"must be more than {low} and at most {high}, got {value}", m.key(name), node)
    return float(value)


def _bool(m: _Map, name: str, node: yaml.Node) -> bool:
    value = _scalar(m.src, node, m.key(name))
    if not isinstance(value, bool):
        raise m.src.err(f"expected true or false, got {value!r}", m.key(name), node)
    return value


def _choice(m: _Map, name: str, node: yaml.Node, choices: Collection[str]) -> str:
    value = _str(m, name, node)
    if value not in choices:
        raise m.src.err(f"must be one of {', '.join(choices)}, got {value!r}", m.key(name), node)
    return value


def _items(m: _Map, name: str, node: yaml.Node) -> Iterator[tuple[str, yaml.Node]]:
    """(key path, node) for each element of a list."""
    if not isinstance(node, yaml.SequenceNode):
        raise m.src.err(f"expected a list, got a {_kind(node)}", m.key(name), node)
    for index, item in enumerate(node.value):
        yield f"{m.key(name)}[{index}]", item


def _str_item(src: _Src, key: str, node: yaml.Node) -> str:
    value = _scalar(src, node, key)
    if not isinstance(value, str) or not value.strip():
        raise src.err(f"expected text, got {value!r}", key, node)
    return value.strip()


def _https_url(src: _Src, key: str, node: yaml.Node, value: str) -> str:
    """Identity provider URLs must be https: passwords travel over them."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise src.err(f"not a valid URL ({exc})", key, node) from exc
    if parts.scheme != "https":
        raise src.err(f"must be an https:// URL, got {value!r}", key, node)
    if not parts.hostname:
        raise src.err(f"URL has no host: {value!r}", key, node)
    if parts.username is not None or parts.password is not None:
        raise src.err("URL must not carry user name or password", key, node)
    if parts.fragment:
        raise src.err("URL must not have a #fragment", key, node)
    return value


def _path(m: _Map, name: str, node: yaml.Node) -> Path:
    return m.src.resolve(_str(m, name, node))


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _read_yaml(src: _Src) -> yaml.Node:
    """Compose one YAML file into a node tree, or raise ConfigError with its line."""
    try:
        raw = src.path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("file not found", file=src.shown) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", file=src.shown) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES} bytes", file=src.shown)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("file is not UTF-8 text", file=src.shown) from exc
    return _compose(src, text)


def _compose(src: _Src, text: str) -> yaml.Node:
    """Compose YAML (or JSON) text into a node tree, or raise ConfigError with its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"YAML syntax error: {problem}", file=src.shown, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=src.shown) from exc
    if root is None:
        raise ConfigError("file is empty", file=src.shown)
    return root


# --------------------------------------------------------------------------
# Main file.

_MAIN_KEYS = ("listen", "state_dir", "tenants_dir", "secrets", "sessions", "idp_client", "logging", "printer",
              "audit", "public_url", "console", "store", "web_signin")
STORE_URL_ENV = "LOGINBRIDGE_STORE_URL"
_STORE_SCHEMES = ("sqlite", "postgresql", "postgres")
_PRINTER_KEYS = ("enabled", "host", "port", "name", "location", "info", "max_job_mb",
                 "verification_cache_seconds", "spool_dir", "delivery", "tls", "plain_http_from", "dnssd")
_PRINTER_TLS_KEYS = ("cert", "key")
_PRINTER_DNSSD_KEYS = ("enabled", "name", "interfaces")
_DELIVERY_KEYS = ("url", "outbox_dir", "max_attempts", "backoff_seconds", "ca_file", "lease_seconds", "poll_seconds")


def load_config(path: Path | str, *, require_files: bool = True) -> BridgeConfig:
    """Read, validate and freeze the whole configuration.

    ``require_files=False`` lets management commands run before the files an
    IdP hands out (signing certificates, CA bundles, metadata) exist: missing
    ones become warnings instead of errors.  Malformed ones are still errors.

    Every mistake is looked for before giving up: :class:`ConfigErrors` reads
    as the first one (file, key, line) and lists them all in ``errors``.
    """
    main_path = Path(path)
    src = _Src(main_path, os.path.normpath(main_path))
    config: BridgeConfig | None = None
    with src.part():
        config = _load_config(src, require_files)
    if config is None or src.errors:
        raise ConfigErrors(src.errors)
    return config


def _load_config(src: _Src, require_files: bool) -> BridgeConfig:
    """The main file and the tenant files; each section on its own (errors in ``src.errors``)."""
    warnings: list[str] = []
    root = _Map(src, _read_yaml(src), "", _MAIN_KEYS)

    host, port = "127.0.0.1", 8080
    header, idle = ListenerTimeouts().header, ListenerTimeouts().idle
    trusted_proxies: list[IPNetwork] = []
    listen: _Map | None = None
    with src.part():
        listen = root.sub("listen", ("host", "port", "header_timeout_seconds", "idle_timeout_seconds",
                                     "trusted_proxies"))
    if listen is not None:
        with src.part():
            if (node := listen.get("host")) is not None:
                host = _str(listen, "host", node)
        with src.part():
            if (node := listen.get("port")) is not None:
                port = _int(listen, "port", node, 0, 65535)
        with src.part():
            if (node := listen.get("header_timeout_seconds")) is not None:
                header = _number(listen, "header_timeout_seconds", node, 0, 300)
        with src.part():
            if (node := listen.get("idle_timeout_seconds")) is not None:
                idle = _number(listen, "idle_timeout_seconds", node, 0, 3600)
        with src.part():
            if (node := listen.get("trusted_proxies")) is not None:
                for key, item in _items(listen, "trusted_proxies", node):
                    with src.part():
                        trusted_proxies.append(_network(src, key, item))
    timeouts = ListenerTimeouts(header=header, idle=idle)

    state_dir = src.resolve("state")  # stands in for a wrong state_dir while the rest is checked
    with src.part():
        state_dir = _path(root, "state_dir", root.require("state_dir"))
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise src.err(f"cannot create {state_dir} ({exc.strerror})", "state_dir",
                          root.get("state_dir")) from exc

    hmac_key = b""
    with src.part():
        secrets_map = _Map(src, root.require("secrets"), "secrets", ("hmac_key",))
        hmac_key = _load_secret(secrets_map, "hmac_key", warnings)

    ttl = timedelta(seconds=28800)
    with src.part():
        sessions = root.sub("sessions", ("ttl_seconds",))
        if sessions is not None and (node := sessions.get("ttl_seconds")) is not None:
            ttl = timedelta(seconds=_int(sessions, "ttl_seconds", node, 60, 30 * 86400))

    idp_client = _idp_client(None)
    with src.part():
        idp_client = _idp_client(root.sub("idp_client", ("connect_timeout_seconds", "timeout_seconds",
                                                          "max_connections_per_idp")))

    log_level = "INFO"
    with src.part():
        logging_map = root.sub("logging", ("level",))
        if logging_map is not None and (node := logging_map.get("level")) is not None:
            log_level = _str(logging_map, "level", node).upper()
            if log_level not in LOG_LEVELS:
                raise src.err(f"must be one of {', '.join(LOG_LEVELS)}", "logging.level", node)

    tenants: tuple[TenantConfig, ...] = ()
    tenants_dir = src.resolve("tenants")
    with src.part():
        tenants_node = root.get("tenants_dir")
        if tenants_node is not None:
            tenants_dir = _path(root, "tenants_dir", tenants_node)
        tenants = _load_tenants(src, tenants_dir, tenants_node, ttl, require_files, warnings)
        if not tenants:
            warnings.append(f"{tenants_dir}: no tenant files (*.yaml): nobody can sign in")

    printer: PrinterConfig | None = None
    with src.part():
        printer = _printer(root.sub("printer", _PRINTER_KEYS), state_dir, require_files, warnings)
    audit_file = _absolute(state_dir / "audit.jsonl")
    with src.part():
        audit_map = root.sub("audit", ("file",))
        if audit_map is not None and (node := audit_map.get("file")) is not None:
            audit_file = _absolute(_path(audit_map, "file", node))

    public_url = f"http://{host}:{port}"
    with src.part():
        if (node := root.get("public_url")) is not None:
            public_url = _str(root, "public_url", node).rstrip("/")
            if urlsplit(public_url).scheme not in ("http", "https") or not urlsplit(public_url).netloc:
                raise src.err("must be an http(s) URL such as https://bridge.example.com", "public_url", node)

    store_url = ""
    with src.part():
        store_url = _store_url(root.sub("store", ("url",)), state_dir)

    console: ConsoleConfig | None = None
    with src.part():
        console = _console(root.sub("console", ("users",)))
    return_origins: tuple[str, ...] = ()
    with src.part():
        return_origins = _web_signin(root.sub("web_signin", ("return_to",)))

    if src.errors:
        raise _Recorded
    return BridgeConfig(
        store_url=store_url,
        public_url=public_url,
        printer=printer,
        audit_file=audit_file,
        source=_absolute(src.path),
        listen_host=host,
        listen_port=port,
        state_dir=_absolute(state_dir),
        tenants=tenants,
        hmac_key=hmac_key,
        session_ttl=ttl,
        idp_client=idp_client,
        log_level=log_level,
        warnings=tuple(warnings),
        console=console,
        listener_timeouts=timeouts,
        trusted_proxies=tuple(trusted_proxies),
        tenants_dir=_absolute(tenants_dir),
        web_return_origins=return_origins,
    )


def _web_signin(m: _Map | None) -> tuple[str, ...]:
    """``web_signin.return_to``: the platform's web origins ``/v1/web/login`` may hand a session back to.

    Origins only (scheme, host, port), https unless the host is loopback; anything else would make
    the bridge an open redirect.
    """
    if m is None:
        return ()
    node = m.get("return_to")
    if node is None:
        return ()
    origins: list[str] = []
    for key, item in _items(m, "return_to", node):
        text = _str_item(m.src, key, item).strip().rstrip("/")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise m.src.err(f"not a valid URL ({exc})", key, item) from exc
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback):
            raise m.src.err(f"must be an https:// origin (http only on loopback), got {text!r}", key, item)
        if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise m.src.err(f"must be an origin such as https://app.example.com, got {text!r}", key, item)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        origins.append(f"{parts.scheme}://{host.lower()}" + (f":{port}" if port is not None else ""))
    return tuple(origins)


def _store_url(m: _Map | None, state_dir: Path) -> str:
    """``store.url``, or ``LOGINBRIDGE_STORE_URL`` when set; SQLite in the state directory by default.

    A password never stands in the file (secrets come from the environment or a
    file): put it in ``LOGINBRIDGE_STORE_URL``, ``PGPASSWORD`` or a ``PGPASSFILE``.
    """
    from_env = os.environ.get(STORE_URL_ENV, "").strip()
    if from_env:
        if urlsplit(from_env).scheme not in _STORE_SCHEMES:
            raise ConfigError(f"{STORE_URL_ENV} must be a sqlite:/// or postgresql:// URL")
        return from_env
    if m is None or (node := m.get("url")) is None:
        return f"sqlite://{_absolute(state_dir / 'loginbridge.db')}"
    url = _str(m, "url", node).strip()
    parts = urlsplit(url)
    if parts.scheme not in _STORE_SCHEMES:
        raise m.src.err("must be a sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST/DB URL", "store.url", node)
    if parts.password is not None or "password=" in parts.query:
        raise m.src.err(f"holds a password: set it in {STORE_URL_ENV}, PGPASSWORD or a PGPASSFILE, not in this file",
                        "store.url", node)
    if parts.scheme == "sqlite" and not parts.path.startswith("/"):
        raise m.src.err("a SQLite URL names an absolute path: sqlite:///var/lib/loginbridge/loginbridge.db",
                        "store.url", node)
    return url


_CONSOLE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONSOLE_HASH = re.compile(r"scrypt\$[0-9]{1,9}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9+/=]{8,200}\$[A-Za-z0-9+/=]{8,200}")


def _console(m: _Map | None) -> ConsoleConfig | None:
    """Console users: a name and a scrypt hash each; a plain password is refused."""
    if m is None:
        return None
    users: list[ConsoleUser] = []
    node = m.get("users")
    if node is None:
        return ConsoleConfig(users=())
    names: list[str] = []
    for key, item in _items(m, "users", node):  # each user, and its name and hash, checked on its own
        with m.src.part():
            u = _Map(m.src, item, key, ("name", "password_hash"))
            name = hashed = ""
            with m.src.part():
                name = _str(u, "name", u.require("name"))
                if not _CONSOLE_NAME.fullmatch(name):
                    raise m.src.err("a console user name is 1-64 letters, digits, dots, dashes or underscores",
                                    u.key("name"), u.require("name"))
                if name in names:
                    raise m.src.err(f"console user {name} is listed twice", u.key("name"), u.require("name"))
                names.append(name)
            with m.src.part():
                hash_node = u.require("password_hash")
                hashed = _str(u, "password_hash", hash_node)
                if not _CONSOLE_HASH.fullmatch(hashed):
                    raise m.src.err("not a password hash: run `loginbridge console hash-password` and paste its "
                                    "output (never the password itself)", u.key("password_hash"), hash_node)
            if name and hashed:
                users.append(ConsoleUser(name=name, password_hash=hashed))
    return ConsoleConfig(users=tuple(users))


def _printer(m: _Map | None, state_dir: Path, require_files: bool, warnings: list[str]) -> PrinterConfig | None:
    """The printer section; absent means no printer listener."""
    if m is None:
        return None
    enabled = True if (node := m.get("enabled")) is None else _bool(m, "enabled", node)
    host = "127.0.0.1" if (node := m.get("host")) is None else _str(m, "host", node)
    port = 8631 if (node := m.get("port")) is None else _int(m, "port", node, 0, 65535)
    name = "loginbridge Print-to-Web" if (node := m.get("name")) is None else _str(m, "name", node)
    location = "" if (node := m.get("location")) is None else _str(m, "location", node)
    info = "Print-to-Web printer" if (node := m.get("info")) is None else _str(m, "info", node)
    max_mb = 1024 if (node := m.get("max_job_mb")) is None else _int(m, "max_job_mb", node, 1, 64 * 1024)
    cache = 60 if (node := m.get("verification_cache_seconds")) is None else _int(
        m, "verification_cache_seconds", node, 0, 3600)
    spool = state_dir / "spool" if (node := m.get("spool_dir")) is None else _path(m, "spool_dir", node)
    d = m.sub("delivery", _DELIVERY_KEYS)
    if d is None:
        raise m.src.err("missing required key (give delivery.url or delivery.outbox_dir)", m.key("delivery"), m.node)
    url_node, outbox_node = d.get("url"), d.get("outbox_dir")
    if (url_node is None) == (outbox_node is None):
        raise m.src.err("give exactly one of url or outbox_dir", d.prefix, d.node)
    url = None
    if url_node is not None:
        url = _str(d, "url", url_node)
        if urlsplit(url).scheme != "https":
            raise m.src.err("the delivery URL must be https", d.key("url"), url_node)
    outbox = None if outbox_node is None else _absolute(_path(d, "outbox_dir", outbox_node))
    attempts = 5 if (node := d.get("max_attempts")) is None else _int(d, "max_attempts", node, 1, 100)
    backoff = 2.0 if (node := d.get("backoff_seconds")) is None else _number(d, "backoff_seconds", node, 0, 3600)
    ca_file = None if (node := d.get("ca_file")) is None else _absolute(_path(d, "ca_file", node))
    lease = 60.0 if (node := d.get("lease_seconds")) is None else _number(d, "lease_seconds", node, 3, 3600)
    poll = 2.0 if (node := d.get("poll_seconds")) is None else _number(d, "poll_seconds", node, 0.1, 300)
    delivery = DeliveryConfig(url=url, outbox_dir=outbox, max_attempts=attempts, backoff_seconds=backoff,
                              ca_file=ca_file, lease_seconds=lease, poll_seconds=poll)
    tls_map = m.sub("tls", _PRINTER_TLS_KEYS)
    tls = None if tls_map is None else _printer_tls(tls_map, require_files, warnings)
    plain_from: tuple[IPNetwork, ...] | None = None if tls is None else LOOPBACK_NETWORKS
    if (node := m.get("plain_http_from")) is not None:
        plain_from = tuple(_network(m.src, key, item) for key, item in _items(m, "plain_http_from", node))
    dnssd_map = m.sub("dnssd", _PRINTER_DNSSD_KEYS)
    dnssd = None if dnssd_map is None else _printer_dnssd(dnssd_map, name, host, tls is not None, warnings)
    return PrinterConfig(enabled=enabled, host=host, port=port, name=name, location=location, info=info,
                         max_job_bytes=max_mb * 1024 * 1024, verification_cache=timedelta(seconds=cache),
                         spool_dir=_absolute(spool), delivery=delivery, tls=tls, plain_http_from=plain_from,
                         dnssd=dnssd)


DNSSD_NAME_BYTES = 63
"""RFC 6763 section 4.1.1: a service instance name is at most 63 bytes of UTF-8."""


def _dnssd_name(name: str) -> str:
    """``printer.name`` as a service instance name: no dots (python-zeroconf splits names at every dot, escaped
    or not), no control characters, cut to 63 bytes on a character boundary."""
    cleaned = "".join(" " if ch == "." or not ch.isprintable() else ch for ch in name).strip() or "Print-to-Web"
    return cleaned.encode("utf-8")[:DNSSD_NAME_BYTES].decode("utf-8", "ignore").strip()


def _printer_dnssd(m: _Map, printer_name: str, host: str, tls: bool, warnings: list[str]) -> PrinterDnssd | None:
    """``printer.dnssd``: None unless ``enabled: true``; each key checked on its own (errors in ``m.src``)."""
    enabled, name, interfaces = False, _dnssd_name(printer_name), []
    with m.src.part():
        enabled = False if (node := m.get("enabled")) is None else _bool(m, "enabled", node)
    with m.src.part():
        if (node := m.get("name")) is not None:
            name = _str(m, "name", node)
            if len(name.encode("utf-8")) > DNSSD_NAME_BYTES or "." in name or not name.isprintable():
                raise m.src.err(f"a DNS-SD name is at most {DNSSD_NAME_BYTES} bytes of UTF-8, without dots or "
                                "control characters", m.key("name"), node)
    with m.src.part():
        if (node := m.get("interfaces")) is not None:
            for key, item in _items(m, "interfaces", node):
                with m.src.part():
                    raw = _str_item(m.src, key, item)
                    try:
                        interfaces.append(str(ipaddress.ip_address(raw)))
                    except ValueError as exc:
                        raise m.src.err(f"not an IP address of this host: {raw!r}", key, item) from exc
    if not enabled:
        return None
    if not tls:
        warnings.append(f"{m.src.shown}: {m.prefix}: announced without printer.tls: clients find a printer that "
                        "takes passwords over plain HTTP")
    if not interfaces and host in ("127.0.0.1", "::1", "localhost"):
        warnings.append(f"{m.src.shown}: {m.prefix}: printer.host is {host}: the announced printer cannot be "
                        "reached from other hosts")
    return PrinterDnssd(name=name, interfaces=tuple(interfaces))


def _printer_tls(m: _Map, require_files: bool, warnings: list[str]) -> PrinterTls:
    """``printer.tls``: both files exist and hold a certificate and the (unencrypted) key of its public key."""
    cert_node, key_node = m.require("cert"), m.require("key")
    cert_file = _existing_file(m, "cert", cert_node, require_files, warnings)
    key_file = _existing_file(m, "key", key_node, require_files, warnings)
    if cert_file.is_file() and key_file.is_file():
        _check_key_pair(m, (cert_file, cert_node), (key_file, key_node), warnings)
    return PrinterTls(cert=cert_file, key=key_file)


def _check_key_pair(m: _Map, cert: tuple[Path, yaml.Node], key: tuple[Path, yaml.Node], warnings: list[str]) -> None:
    """The certificate file's first certificate and the key file's key are one pair that TLS can serve."""
    (cert_file, cert_node), (key_file, key_node) = cert, key
    try:
        cert_data, key_data = cert_file.read_bytes(), key_file.read_bytes()
    except OSError as exc:
        raise m.src.err(f"cannot read {exc.filename} ({exc.strerror})", m.prefix, m.node) from exc
    try:
        certificate = x509.load_pem_x509_certificates(cert_data)[0]
    except ValueError as exc:
        raise m.src.err(f"{cert_file}: no readable PEM certificate in it", m.key("cert"), cert_node) from exc
    try:
        private_key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError as exc:  # cryptography: "Password was not given but private key is encrypted"
        raise m.src.err(f"{key_file}: the key is encrypted; give it without a passphrase (file mode 600)",
                        m.key("key"), key_node) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise m.src.err(f"{key_file}: no readable PEM private key in it", m.key("key"), key_node) from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    subject = certificate.subject.rfc4514_string()
    if private_key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise m.src.err(f"{key_file} is not the key of the certificate {subject} in {cert_file}",
                        m.key("key"), key_node)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as exc:
        raise m.src.err(f"{cert_file} and {key_file} cannot serve TLS ({exc.reason or exc})", m.prefix,
                        m.node) from exc
    expiry, now = certificate.not_valid_after_utc, datetime.now(UTC)
    if expiry <= now:
        warnings.append(f"{m.src.shown}: {m.key('cert')}: certificate {subject} expired on {expiry:%Y-%m-%d}")
    elif expiry - now <= CERT_EXPIRY_WARNING:
        warnings.append(f"{m.src.shown}: {m.key('cert')}: certificate {subject} expires on {expiry:%Y-%m-%d} "
                        f"(in {(expiry - now).days} days)")


def _throttle(m: _Map | None) -> ThrottleConfig:
    if m is None:
        return ThrottleConfig()
    base = ThrottleConfig()

    def num(name: str, default: int, low: int, high: int) -> int:
        node = m.get(name)
        return default if node is None else _int(m, name, node, low, high)

    return ThrottleConfig(
        user_failures=num("user_failures", base.user_failures, 1, 1000),
        device_failures=num("device_failures", base.device_failures, 1, 100000),
        source_failures=num("source_failures", base.source_failures, 1, 100000),
        window=timedelta(seconds=num("window_seconds", int(base.window.total_seconds()), 10, 86400)),
        stale_password_ttl=timedelta(seconds=num("stale_password_ttl_seconds",
                                                 int(base.stale_password_ttl.total_seconds()), 0, 30 * 86400)),
        spray_distinct_users=num("spray_distinct_users", base.spray_distinct_users, 2, 100000),
        spray_window=timedelta(seconds=num("spray_window_seconds", int(base.spray_window.total_seconds()),
                                           10, 86400)),
    )


def _idp_client(m: _Map | None) -> IdpClientConfig:
    connect, total, conns = 5.0, 15.0, 20
    if m is not None:
        if (node := m.get("connect_timeout_seconds")) is not None:
            connect = _number(m, "connect_timeout_seconds", node, 0, 300)
        if (node := m.get("timeout_seconds")) is not None:
            total = _number(m, "timeout_seconds", node, 0, 600)
        if (node := m.get("max_connections_per_idp")) is not None:
            conns = _int(m, "max_connections_per_idp", node, 1, 10000)
    return IdpClientConfig(connect_timeout=connect, timeout=total, max_connections_per_idp=conns)


def _load_secret(parent: _Map, name: str, warnings: list[str]) -> bytes:
    """A secret named by ``{env: VAR}`` or ``{file: path, generate: bool}``; never inline."""
    node = parent.require(name)
    key = parent.key(name)
    if not isinstance(node, yaml.MappingNode):
        raise parent.src.err("secrets are never inline: use env or file", key, node)
    m = _Map(parent.src, node, key, ("env", "file", "generate"))
    env_node, file_node, gen_node = m.get("env"), m.get("file"), m.get("generate")
    if (env_node is None) == (file_node is None):
        raise parent.src.err("give exactly one of env or file", key, node)
    if env_node is not None:
        if gen_node is not None:
            raise parent.src.err("generate only applies to file", m.key("generate"), gen_node)
        var = _str(m, "env", env_node)
        value = os.environ.get(var)
        if not value:
            raise parent.src.err(f"environment variable {var} is not set", m.key("env"), env_node)
        data = value.strip().encode()
    else:
        assert file_node is not None
        file = _path(m, "file", file_node)
        generate = gen_node is not None and _bool(m, "generate", gen_node)
        if generate and not file.exists():
            _generate_secret_file(m, file, file_node)
        try:
            data = file.read_bytes().strip()
            mode = file.stat().st_mode
        except FileNotFoundError as exc:
            raise parent.src.err(f"secret file {file} not found (add generate: true to create it)",
                                 m.key("file"), file_node) from exc
        except OSError as exc:
            raise parent.src.err(f"cannot read {file} ({exc.strerror})", m.key("file"), file_node) from exc
        if mode & 0o077:
            warnings.append(f"{file}: secret file is readable by other users (chmod 600 it)")
    if len(data) < MIN_SECRET_BYTES:
        raise parent.src.err(f"secret is too short: at least {MIN_SECRET_BYTES} bytes are needed", key, node)
    return data


def _generate_secret_file(m: _Map, file: Path, node: yaml.Node) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    except FileExistsError:
        return
    except OSError as exc:
        raise m.src.err(f"cannot create {file} ({exc.strerror})", m.key("file"), node) from exc
    log.info("generated secret file %s", file)


# --------------------------------------------------------------------------
# Tenant files.

_TENANT_KEYS = ("id", "name", "domains", "protocol", "idp_whitelist", "session_ttl_seconds",
                "wstrust", "saml2", "device_networks", "device_login_identity", "throttle",
                "directory", "printer_link_days", "badge_binding_days", "oidc")
_THROTTLE_KEYS = ("user_failures", "device_failures", "source_failures", "window_seconds",
                  "stale_password_ttl_seconds", "spray_distinct_users", "spray_window_seconds")
_WSTRUST_KEYS = ("adfs_url", "endpoint", "version", "applies_to", "token_type", "issuer",
                 "signing_certificates", "federation_metadata", "signature_algorithms",
                 "clock_skew_seconds", "subject_claim", "ca_file", "metadata_refresh_seconds", "recipient",
                 "passive_url")
_DIRECTORY_KEYS = ("url", "starttls", "ca_file", "bind_dn", "bind_password_env", "bind_password_file", "base_dn",
                   "user_filter", "group_dn", "nested_groups", "attributes", "disabled_filter", "page_size",
                   "timeout_seconds", "sync_every_minutes")
_DIRECTORY_ATTRIBUTE_KEYS = ("email", "email_fallback", "username", "display_name")
_LDAP_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_SAML2_KEYS = ("metadata_file", "metadata_url", "entity_id", "ecp_url", "signing_certificates",
               "sp_entity_id", "clock_skew_seconds", "subject_claim", "signature_algorithms", "ca_file",
               "acs_url", "metadata_refresh_seconds", "sign_requests", "sso_url")
_OIDC_KEYS = ("issuer", "client_id", "client_auth", "client_secret_env", "client_secret_file", "private_key_file",
              "private_key_id", "private_key_algorithm", "client_certificate_file", "scopes", "email_claim",
              "signing_algorithms", "clock_skew_seconds", "ca_file", "discovery_refresh_seconds",
              "jwks_refresh_seconds", "password_grant", "redirect_uri")


@dataclass(slots=True)
class _Claims:
    """What a tenant file claims that no other may (its id, its domains): kept even when the rest is wrong."""

    id: tuple[str, yaml.Node] | None = None
    domains: list[tuple[str, str, yaml.Node]] = field(default_factory=list)  # (domain, key path, node)


def _load_tenants(main: _Src, tenants_dir: Path, node: yaml.Node | None, default_ttl: timedelta,
                  require_files: bool, warnings: list[str]) -> tuple[TenantConfig, ...]:
    """Every tenant file, each checked on its own; an id or a domain two files claim names both files."""
    if not tenants_dir.is_dir():
        raise main.err(f"tenants directory {tenants_dir} does not exist", "tenants_dir", node)
    tenants: list[TenantConfig] = []
    ids: dict[str, str] = {}
    domains: dict[str, str] = {}
    for file in tenant_files(tenants_dir):
        src = _Src(file, os.path.normpath(file), main.errors)
        claims = _Claims()
        with src.part():
            m = _Map(src, _read_yaml(src), "", _TENANT_KEYS)
            tenants.append(_tenant(m, default_ttl, require_files, warnings, claims))
        tenant_id = None
        if claims.id is not None:
            tenant_id, id_node = claims.id
            if tenant_id in ids:
                src.record(f"duplicate tenant id: {tenant_id!r} is already used by {ids[tenant_id]}", "id", id_node)
            else:
                ids[tenant_id] = src.shown
        for domain, key, domain_node in claims.domains:
            if domain in domains:
                src.record(f"domain {domain} is already claimed by tenant {domains[domain]}", key, domain_node)
            else:
                domains[domain] = f"{tenant_id or '(id not readable)'} ({src.shown})"
    return tuple(tenants)


def load_tenant_text(text: str, *, shown: str, base_dir: Path, default_ttl: timedelta,
                     require_files: bool = True) -> tuple[TenantConfig, tuple[str, ...]]:
    """One tenant from its document (a tenant file's YAML, or JSON): validated as a tenant file is.

    ``shown`` names the document in errors (a file path, or ``api``); relative paths in it are read
    from ``base_dir``.  Returns the tenant and its warnings; otherwise :class:`ConfigErrors`, which
    reads as the first mistake (key path and line) and lists them all.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"document is larger than {MAX_CONFIG_BYTES} bytes", file=shown)
    src = _Src(base_dir / f"{shown.rsplit('/', 1)[-1] or 'tenant'}", shown)
    warnings: list[str] = []
    tenant: TenantConfig | None = None
    with src.part():
        tenant = _tenant(_Map(src, _compose(src, text), "", _TENANT_KEYS), default_ttl, require_files, warnings)
    if tenant is None or src.errors:
        raise ConfigErrors(src.errors)
    return tenant, tuple(warnings)


def tenant_files(tenants_dir: Path) -> list[Path]:
    """The tenant files of a directory, in the order they are read."""
    return sorted(tenants_dir.glob("*.yaml"))


def _tenant(m: _Map, default_ttl: timedelta, require_files: bool, warnings: list[str],
            claims: _Claims | None = None) -> TenantConfig:
    """One tenant; its independent parts are each checked on their own (``claims``: its id and domains)."""
    src = m.src
    before = len(src.errors)
    claims = _Claims() if claims is None else claims
    tenant_id = name = ""
    with src.part():
        id_node = m.require("id")
        tenant_id = _str(m, "id", id_node)
        if not _TENANT_ID.fullmatch(tenant_id):
            raise src.err("tenant id must be lower-case letters, digits and '-' (at most 63)", "id", id_node)
        claims.id = (tenant_id, id_node)
    with src.part():
        name = _str(m, "name", m.require("name"))

    domains: list[str] = []
    with src.part():
        domains_node = m.require("domains")
        for key, item in _items(m, "domains", domains_node):
            with src.part():
                domain = _str_item(src, key, item).lower().rstrip(".")
                if not _valid_domain(domain):
                    raise src.err(f"not a valid DNS domain name: {domain!r}", key, item)
                if domain in domains:
                    raise src.err(f"domain {domain} is listed twice", key, item)
                domains.append(domain)
                claims.domains.append((domain, key, item))
        if not domains_node.value:
            raise src.err("at least one domain is needed", "domains", domains_node)

    protocol: Protocol | None = None
    with src.part():
        protocol_node = m.require("protocol")
        protocol = Protocol(_choice(m, "protocol", protocol_node, [p.value for p in Protocol]))

    whitelist: list[IPNetwork] = []
    with src.part():
        wl_node = m.require("idp_whitelist")
        for key, item in _items(m, "idp_whitelist", wl_node):
            with src.part():
                whitelist.append(_network(src, key, item))
        if not wl_node.value:
            raise src.err("at least one network is needed (the identity provider's address)", "idp_whitelist",
                          wl_node)

    device_networks: list[IPNetwork] = []
    with src.part():
        if (dn_node := m.get("device_networks")) is not None:
            for key, item in _items(m, "device_networks", dn_node):
                with src.part():
                    device_networks.append(_network(src, key, item))
    identity = DeviceLoginIdentity.EMAIL
    with src.part():
        if (node := m.get("device_login_identity")) is not None:
            identity = DeviceLoginIdentity(_choice(m, "device_login_identity", node,
                                                   [i.value for i in DeviceLoginIdentity]))
    throttle = ThrottleConfig()
    with src.part():
        throttle = _throttle(m.sub("throttle", _THROTTLE_KEYS))
    directory: DirectoryConfig | None = None
    with src.part():
        directory_map = m.sub("directory", _DIRECTORY_KEYS)
        directory = None if directory_map is None else _directory(directory_map, require_files, warnings)

    ttl = default_ttl
    with src.part():
        if (node := m.get("session_ttl_seconds")) is not None:
            ttl = timedelta(seconds=_int(m, "session_ttl_seconds", node, 60, 30 * 86400))
    link_days = 90
    with src.part():
        if (node := m.get("printer_link_days")) is not None:
            link_days = _int(m, "printer_link_days", node, 1, 3660)
    badge_days = 30
    with src.part():
        if (node := m.get("badge_binding_days")) is not None:
            badge_days = _int(m, "badge_binding_days", node, 1, 366)

    # The protocol's own section; with no readable protocol, whichever section is there is still checked.
    wstrust: WsTrustConfig | None = None
    saml2: Saml2Config | None = None
    oidc: OidcConfig | None = None
    for section in (Protocol.WSTRUST, Protocol.SAML2, Protocol.OIDC):
        node = m.get(section.value)
        if protocol is not None and section is not protocol and node is not None:
            src.record(f"section only allowed with protocol: {section.value}", section.value, node)
    with src.part():
        if protocol is Protocol.WSTRUST or (protocol is None and m.get("wstrust") is not None):
            section_map = _Map(src, m.require("wstrust"), "wstrust", _WSTRUST_KEYS)
            wstrust = _wstrust(section_map, require_files, warnings)
    with src.part():
        if protocol is Protocol.SAML2 or (protocol is None and m.get("saml2") is not None):
            section_map = _Map(src, m.require("saml2"), "saml2", _SAML2_KEYS)
            saml2 = _saml2(section_map, require_files, warnings)
    with src.part():
        if protocol is Protocol.OIDC or (protocol is None and m.get("oidc") is not None):
            section_map = _Map(src, m.require("oidc"), "oidc", _OIDC_KEYS)
            oidc = _oidc(section_map, require_files, warnings)

    if protocol is None or src.failed_since(before):
        raise _Recorded
    return TenantConfig(
        id=tenant_id,
        name=name,
        domains=tuple(domains),
        protocol=protocol,
        idp_whitelist=tuple(whitelist),
        session_ttl=ttl,
        wstrust=wstrust,
        saml2=saml2,
        oidc=oidc,
        source=_absolute(src.path),
        device_networks=tuple(device_networks),
        device_login_identity=identity,
        throttle=throttle,
        directory=directory,
        printer_link_days=link_days,
        badge_binding_days=badge_days,
    )


def _directory(m: _Map, require_files: bool, warnings: list[str]) -> DirectoryConfig:
    """The ``directory:`` section: where the tenant's users are read from (docs/directory.md)."""
    src = m.src
    url_node = m.require("url")
    url = _str(m, "url", url_node)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise src.err(f"not a valid URL ({exc})", m.key("url"), url_node) from exc
    if parts.scheme not in ("ldaps", "ldap"):
        raise src.err(f"must be an ldaps:// (or ldap:// with starttls: true) URL, got {url!r}", m.key("url"),
                      url_node)
    if not parts.hostname:
        raise src.err(f"URL has no host: {url!r}", m.key("url"), url_node)
    if parts.username is not None or parts.password is not None or parts.path not in ("", "/") or parts.query:
        raise src.err("give only scheme, host and port in the URL (bind_dn and base_dn are their own keys)",
                      m.key("url"), url_node)
    starttls = False if (node := m.get("starttls")) is None else _bool(m, "starttls", node)
    use_ssl = parts.scheme == "ldaps"
    if use_ssl and starttls:
        raise src.err("starttls is for ldap:// URLs (ldaps:// is TLS from the start)", m.key("starttls"), node)
    if not use_ssl and not starttls:
        raise src.err("the bind password would travel in clear text: use ldaps:// or starttls: true",
                      m.key("url"), url_node)
    ca_file: Path | None = None
    if (node := m.get("ca_file")) is not None:
        ca_file = _existing_file(m, "ca_file", node, require_files, warnings)
        if ca_file.is_file():
            _check_ca_file(m, node, ca_file)

    env_node, file_node = m.get("bind_password_env"), m.get("bind_password_file")
    if (env_node is None) == (file_node is None):
        raise src.err("give exactly one of bind_password_env or bind_password_file (never the password itself)",
                      m.key("bind_password_env"), m.node)
    password_env: str | None = None
    password_file: Path | None = None
    if env_node is not None:
        password_env = _str(m, "bind_password_env", env_node)
        if not os.environ.get(password_env):
            warnings.append(f"{src.shown}: {m.key('bind_password_env')}: environment variable {password_env} "
                            "is not set (the directory sync will fail until it is)")
    else:
        assert file_node is not None
        password_file = _existing_file(m, "bind_password_file", file_node, require_files, warnings)
        if password_file.is_file() and password_file.stat().st_mode & 0o077:
            warnings.append(f"{password_file}: bind password file is readable by other users (chmod 600 it)")

    filters: dict[str, str | None] = {}
    for name in ("user_filter", "disabled_filter"):
        filters[name] = None if (node := m.get(name)) is None else _ldap_filter(m, name, node)
    group_dn = None if (node := m.get("group_dn")) is None else _str(m, "group_dn", node)
    nested = False if (node := m.get("nested_groups")) is None else _bool(m, "nested_groups", node)
    if nested and group_dn is None:
        raise src.err("nested_groups needs group_dn", m.key("nested_groups"), node)

    attrs: dict[str, str | None] = {}
    a = m.sub("attributes", _DIRECTORY_ATTRIBUTE_KEYS)
    if a is not None:
        for name in _DIRECTORY_ATTRIBUTE_KEYS:
            if (node := a.get(name)) is not None:
                value = _str(a, name, node)
                if not _LDAP_ATTRIBUTE.fullmatch(value):
                    raise src.err(f"not an LDAP attribute name: {value!r}", a.key(name), node)
                attrs[name] = value
            elif name == "email_fallback" and name in a.items:  # email_fallback: null turns the fallback off
                attrs[name] = None

    minutes = 0 if (node := m.get("sync_every_minutes")) is None else _int(m, "sync_every_minutes", node, 0,
                                                                            7 * 24 * 60)
    return DirectoryConfig(
        url=url,
        host=parts.hostname,
        port=port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        starttls=starttls,
        ca_file=ca_file,
        bind_dn=_str(m, "bind_dn", m.require("bind_dn")),
        bind_password_env=password_env,
        bind_password_file=password_file,
        base_dn=_str(m, "base_dn", m.require("base_dn")),
        user_filter=filters["user_filter"] or AD_USER_FILTER,
        group_dn=group_dn,
        nested_groups=nested,
        email_attribute=attrs.get("email") or "mail",
        email_fallback_attribute=attrs.get("email_fallback", "userPrincipalName"),
        username_attribute=attrs.get("username") or "sAMAccountName",
        display_name_attribute=attrs.get("display_name") or "displayName",
        disabled_filter=filters["disabled_filter"],
        page_size=500 if (node := m.get("page_size")) is None else _int(m, "page_size", node, 1, 100000),
        timeout=30.0 if (node := m.get("timeout_seconds")) is None else _number(m, "timeout_seconds", node, 0, 600),
        sync_every=timedelta(minutes=minutes) if minutes else None,
    )


def _ldap_filter(m: _Map, name: str, node: yaml.Node) -> str:
    """An LDAP search filter (RFC 4515): in parentheses, balanced (the server checks the rest)."""
    value = _str(m, name, node)
    depth = 0
    for char in value:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if not (value.startswith("(") and value.endswith(")")) or depth != 0:
        raise m.src.err(f"not an LDAP filter in parentheses, like (objectClass=user): {value!r}", m.key(name),
                        node)
    return value


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(domain) <= 253 and len(labels) >= 2 and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _network(src: _Src, key: str, node: yaml.Node) -> IPNetwork:
    raw = _str_item(src, key, node)
    try:
        return ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise src.err(f"not an IP network in CIDR form (like 192.0.2.10/32): {raw!r}", key, node) from exc
        raise src.err(f"{raw} has host bits set; did you mean {loose}?", key, node) from exc


def _common_idp(m: _Map, require_files: bool, warnings: list[str]) -> tuple[
        tuple[x509.Certificate, ...], tuple[str, ...], timedelta, Path | None]:
    """Keys both protocol sections share: pinned certificates, algorithms, skew, CA file (each on its own)."""
    src = m.src
    certs: list[x509.Certificate] = []
    with src.part():
        if (node := m.get("signing_certificates")) is not None:
            for key, item in _items(m, "signing_certificates", node):
                with src.part():  # each certificate file
                    certs.extend(_load_certs(src, key, item, require_files, warnings))
    algorithms = ["rsa-sha256", "rsa-sha512"]
    with src.part():
        if (node := m.get("signature_algorithms")) is not None:
            algorithms = []
            for key, item in _items(m, "signature_algorithms", node):
                with src.part():
                    alg = _str_item(src, key, item).lower()
                    if alg not in SIGNATURE_ALGORITHMS:
                        raise src.err(f"must be one of {', '.join(SIGNATURE_ALGORITHMS)}, got {alg!r}", key, item)
                    if alg not in algorithms:
                        algorithms.append(alg)
            if not node.value:
                raise src.err("at least one algorithm is needed", m.key("signature_algorithms"), node)
    skew, ca_file = _skew_and_ca_file(m, require_files, warnings)
    return tuple(certs), tuple(algorithms), skew, ca_file


def _skew_and_ca_file(m: _Map, require_files: bool, warnings: list[str]) -> tuple[timedelta, Path | None]:
    """``clock_skew_seconds`` and ``ca_file``, as every IdP section has them (each checked on its own)."""
    src = m.src
    skew = timedelta(seconds=300)
    with src.part():
        if (node := m.get("clock_skew_seconds")) is not None:
            skew = timedelta(seconds=_int(m, "clock_skew_seconds", node, 0, 900))
    ca_file: Path | None = None
    with src.part():
        if (node := m.get("ca_file")) is not None:
            ca_file = _existing_file(m, "ca_file", node, require_files, warnings)
            if ca_file.is_file():
                _check_ca_file(m, node, ca_file)
    return skew, ca_file


def _check_ca_file(m: _Map, node: yaml.Node, file: Path) -> None:
    """The file must load as TLS trust anchors (PEM certificates), or logins could never verify the IdP."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system store: only this file is read
    try:
        context.load_verify_locations(cafile=str(file))
    except ssl.SSLError as exc:
        problem = ("holds no PEM certificate (BEGIN CERTIFICATE block)" if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND"
                   else f"is not readable as PEM certificates ({exc.reason or exc.strerror or exc})")
        raise m.src.err(f"{file} {problem}", m.key("ca_file"), node) from exc
    except (OSError, ValueError) as exc:
        raise m.src.err(f"cannot read {file} ({getattr(exc, 'strerror', None) or exc})", m.key("ca_file"),
                        node) from exc


def _existing_file(m: _Map, name: str, node: yaml.Node, require_files: bool, warnings: list[str]) -> Path:
    file = _path(m, name, node)
    if not file.is_file():
        if require_files:
            raise m.src.err(f"file not found: {file}", m.key(name), node)
        warnings.append(f"{m.src.shown}: {m.key(name)}: {file} does not exist yet")
    return _absolute(file)


def _subject_claim(m: _Map, node: yaml.Node | None, default: str) -> str:
    if node is None:
        return default
    claim = _str(m, "subject_claim", node)
    if claim in ("upn", "email", "nameid") or claim.startswith(("http://", "https://", "urn:")):
        return claim
    raise m.src.err(f"must be upn, email, nameid or a claim URI, got {claim!r}", m.key("subject_claim"), node)


def _wstrust(m: _Map, require_files: bool, warnings: list[str]) -> WsTrustConfig:
    """The ``wstrust:`` section; each setting checked on its own (ConfigError: the first of them)."""
    src = m.src
    before = len(src.errors)
    adfs_url = endpoint = None
    with src.part():
        if (node := m.get("adfs_url")) is not None:
            adfs_url = _https_url(src, m.key("adfs_url"), node, _str(m, "adfs_url", node)).rstrip("/")
    with src.part():
        if (node := m.get("endpoint")) is not None:
            endpoint = _https_url(src, m.key("endpoint"), node, _str(m, "endpoint", node))
    if m.absent("adfs_url") and m.absent("endpoint"):
        src.record("give adfs_url (AD FS base URL) or endpoint (the usernamemixed URL)", "wstrust", m.node)

    version = WsTrustVersionSetting.AUTO
    with src.part():
        if (node := m.get("version")) is not None:
            # YAML reads 1.3 as a float and 2005 as an int; accept both spellings.
            raw = _scalar(src, node, m.key("version"))
            text = {1.3: "1.3", 2005: "2005"}.get(raw, raw) if isinstance(raw, int | float) else raw
            try:
                version = WsTrustVersionSetting(str(text).strip().lower())
            except ValueError as exc:
                raise src.err(f'must be "1.3", "2005" or auto, got {raw!r}', m.key("version"), node) from exc

    applies_to = ""
    with src.part():
        applies_to = _str(m, "applies_to", m.require("applies_to"))
    recipient = issuer = None
    with src.part():
        recipient = None if (node := m.get("recipient")) is None else _str(m, "recipient", node)
    passive_url = None
    with src.part():
        if (node := m.get("passive_url")) is not None:
            passive_url = _https_url(src, m.key("passive_url"), node, _str(m, "passive_url", node))
    token_type = TokenTypeSetting.SAML2
    with src.part():
        if (node := m.get("token_type")) is not None:
            token_type = TokenTypeSetting(_choice(m, "token_type", node, [t.value for t in TokenTypeSetting]))
    with src.part():
        issuer = None if (node := m.get("issuer")) is None else _str(m, "issuer", node)
    federation_metadata: bool | None = None if "federation_metadata" in m.misspelt else False  # None: unknown
    with src.part():
        if (node := m.get("federation_metadata")) is not None:
            federation_metadata = None
            federation_metadata = _bool(m, "federation_metadata", node)
    certs, algorithms, skew, ca_file = _common_idp(m, require_files, warnings)
    if m.absent("signing_certificates") and federation_metadata is False:
        src.record("give signing_certificates and/or federation_metadata: true (the IdP's signing "
                   "certificate must be pinned)", "wstrust", m.node)
    subject_claim = "upn"
    with src.part():
        subject_claim = _subject_claim(m, m.get("subject_claim"), "upn")
    refresh = 3600
    with src.part():
        if (node := m.get("metadata_refresh_seconds")) is not None:
            refresh = _int(m, "metadata_refresh_seconds", node, 1, 7 * 86400)
    if src.failed_since(before):
        raise _Recorded
    return WsTrustConfig(
        adfs_url=adfs_url,
        endpoint=endpoint,
        version=version,
        applies_to=applies_to,
        recipient=recipient,
        passive_url=passive_url,
        token_type=token_type,
        issuer=issuer,
        signing_certificates=certs,
        federation_metadata=bool(federation_metadata),
        signature_algorithms=algorithms,
        clock_skew=skew,
        subject_claim=subject_claim,
        ca_file=ca_file,
        metadata_refresh=timedelta(seconds=refresh),
    )


def _saml2(m: _Map, require_files: bool, warnings: list[str]) -> Saml2Config:
    """The ``saml2:`` section; each setting checked on its own (ConfigError: the first of them)."""
    src = m.src
    before = len(src.errors)
    metadata_file: Path | None = None
    metadata_url: str | None = None
    with src.part():
        if (node := m.get("metadata_file")) is not None:
            metadata_file = _existing_file(m, "metadata_file", node, require_files, warnings)
    with src.part():
        if (node := m.get("metadata_url")) is not None:
            metadata_url = _https_url(src, m.key("metadata_url"), node, _str(m, "metadata_url", node))
    has_metadata = not (m.absent("metadata_file") and m.absent("metadata_url"))
    if m.get("metadata_file") is not None and m.get("metadata_url") is not None:
        src.record("give metadata_file or metadata_url, not both", "saml2", m.node)
    entity_id = ecp_url = None
    with src.part():
        entity_id = None if (node := m.get("entity_id")) is None else _str(m, "entity_id", node)
    with src.part():
        if (node := m.get("ecp_url")) is not None:
            ecp_url = _https_url(src, m.key("ecp_url"), node, _str(m, "ecp_url", node))
    sp_entity_id = ""
    with src.part():
        sp_entity_id = _str(m, "sp_entity_id", m.require("sp_entity_id"))
    certs, algorithms, skew, ca_file = _common_idp(m, require_files, warnings)
    if m.absent("signing_certificates") and not has_metadata:
        src.record("give signing_certificates or IdP metadata (metadata_file / metadata_url)", "saml2", m.node)
    if m.absent("entity_id") and not has_metadata:
        src.record("missing required key (no metadata to take it from)", "saml2.entity_id", m.node)
    subject_claim = "nameid"
    with src.part():
        subject_claim = _subject_claim(m, m.get("subject_claim"), "nameid")
    acs_url = None
    with src.part():
        acs_url = None if (node := m.get("acs_url")) is None else _str(m, "acs_url", node)
    refresh = 3600
    with src.part():
        if (node := m.get("metadata_refresh_seconds")) is not None:
            refresh = _int(m, "metadata_refresh_seconds", node, 1, 7 * 86400)
    sign_requests = False
    with src.part():
        sign_requests = False if (node := m.get("sign_requests")) is None else _bool(m, "sign_requests", node)
    sso_url = None
    with src.part():
        if (node := m.get("sso_url")) is not None:
            sso_url = _https_url(src, m.key("sso_url"), node, _str(m, "sso_url", node))
    if src.failed_since(before):
        raise _Recorded
    return Saml2Config(
        metadata_file=metadata_file,
        metadata_url=metadata_url,
        entity_id=entity_id,
        ecp_url=ecp_url,
        signing_certificates=certs,
        sp_entity_id=sp_entity_id,
        clock_skew=skew,
        subject_claim=subject_claim,
        signature_algorithms=algorithms,
        ca_file=ca_file,
        acs_url=acs_url,
        metadata_refresh=timedelta(seconds=refresh),
        sign_requests=sign_requests,
        sso_url=sso_url,
    )


def _oidc(m: _Map, require_files: bool, warnings: list[str]) -> OidcConfig:
    """The ``oidc:`` section; each setting checked on its own (ConfigError: the first of them)."""
    src = m.src
    before = len(src.errors)
    issuer = client_id = ""
    with src.part():
        issuer_node = m.require("issuer")
        issuer = _https_url(src, m.key("issuer"), issuer_node, _str(m, "issuer", issuer_node))
        if urlsplit(issuer).query:
            raise src.err("the issuer has no query (OpenID Connect Discovery 1.0 section 2)", m.key("issuer"),
                          issuer_node)
    with src.part():
        client_id = _str(m, "client_id", m.require("client_id"))
    client_auth: OidcClientAuth | None = None
    with src.part():
        auth_node = m.require("client_auth")
        client_auth = OidcClientAuth(_choice(m, "client_auth", auth_node, [a.value for a in OidcClientAuth]))
    secret_env: str | None = None
    secret_file: Path | None = None
    key_file: Path | None = None
    key_id: str | None = None
    key_alg = "RS256"
    env_node, file_node = m.get("client_secret_env"), m.get("client_secret_file")
    key_node = m.get("private_key_file")
    with src.part():
        if client_auth is OidcClientAuth.CLIENT_SECRET_BASIC:
            if (env_node is None) == (file_node is None):
                raise src.err("client_secret_basic needs exactly one of client_secret_env or client_secret_file "
                              "(never the secret itself)", m.key("client_secret_env"), m.node)
            if env_node is not None:
                secret_env = _str(m, "client_secret_env", env_node)
                if not os.environ.get(secret_env):
                    warnings.append(f"{src.shown}: {m.key('client_secret_env')}: environment variable {secret_env} "
                                    "is not set (sign-ins will fail until it is)")
            else:
                assert file_node is not None
                secret_file = _existing_file(m, "client_secret_file", file_node, require_files, warnings)
                if secret_file.is_file() and secret_file.stat().st_mode & 0o077:
                    warnings.append(f"{secret_file}: client secret file is readable by other users (chmod 600 it)")
        elif env_node is not None or file_node is not None:
            raise src.err("a client secret is only used with client_auth: client_secret_basic",
                          m.key("client_secret_env" if env_node is not None else "client_secret_file"),
                          env_node if env_node is not None else file_node)
    with src.part():
        if client_auth is OidcClientAuth.PRIVATE_KEY_JWT:
            if key_node is None:
                raise src.err("private_key_jwt needs private_key_file (a PEM private key)",
                              m.key("private_key_file"), m.node)
            key_file = _existing_file(m, "private_key_file", key_node, require_files, warnings)
            if key_file.is_file():
                _check_private_key(m, key_node, key_file)
        elif key_node is not None:
            raise src.err("a private key is only used with client_auth: private_key_jwt", m.key("private_key_file"),
                          key_node)
    cert_file: Path | None = None
    with src.part():
        if (cert_node := m.get("client_certificate_file")) is not None:
            if client_auth is not OidcClientAuth.PRIVATE_KEY_JWT:
                raise src.err("a client certificate is only used with client_auth: private_key_jwt",
                              m.key("client_certificate_file"), cert_node)
            cert_file = _existing_file(m, "client_certificate_file", cert_node, require_files, warnings)
            if cert_file.is_file() and key_file is not None and key_file.is_file():
                _check_certificate_of_key(m, cert_node, cert_file, key_file)
    with src.part():
        key_id = None if (node := m.get("private_key_id")) is None else _str(m, "private_key_id", node)
    with src.part():
        if (node := m.get("private_key_algorithm")) is not None:
            key_alg = _choice(m, "private_key_algorithm", node, OIDC_ASYMMETRIC_ALGORITHMS)
    scopes: list[str] = ["openid", "email", "profile"]
    with src.part():
        if (node := m.get("scopes")) is not None:
            scopes = []
            for key, item in _items(m, "scopes", node):
                with src.part():
                    scope = _str_item(src, key, item)
                    if not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", scope):
                        raise src.err(f"not a valid OAuth scope (RFC 6749 section 3.3): {scope!r}", key, item)
                    if scope not in scopes:
                        scopes.append(scope)
            if "openid" not in scopes:
                raise src.err("the scopes must include openid (an ID token is what proves the user)",
                              m.key("scopes"), node)
    email_claim = "email"
    with src.part():
        if (node := m.get("email_claim")) is not None:
            email_claim = _choice(m, "email_claim", node, OIDC_EMAIL_CLAIMS)
    algorithms = ["RS256"]
    with src.part():
        if (node := m.get("signing_algorithms")) is not None:
            algorithms = []
            allowed = OIDC_ASYMMETRIC_ALGORITHMS + OIDC_HMAC_ALGORITHMS
            for key, item in _items(m, "signing_algorithms", node):
                with src.part():
                    alg = _str_item(src, key, item)
                    if alg.lower() == "none":
                        raise src.err("alg none means an unsigned ID token: never allowed", key, item)
                    if alg not in allowed:
                        raise src.err(f"must be one of {', '.join(allowed)}, got {alg!r}", key, item)
                    if alg in OIDC_HMAC_ALGORITHMS and client_auth is not OidcClientAuth.CLIENT_SECRET_BASIC:
                        raise src.err(f"{alg} is keyed with the client secret: only with client_auth: "
                                      "client_secret_basic", key, item)
                    if alg not in algorithms:
                        algorithms.append(alg)
            if not node.value:
                raise src.err("at least one algorithm is needed", m.key("signing_algorithms"), node)
    skew, ca_file = _skew_and_ca_file(m, require_files, warnings)
    refresh = 3600
    with src.part():
        if (node := m.get("discovery_refresh_seconds")) is not None:
            refresh = _int(m, "discovery_refresh_seconds", node, 60, 7 * 86400)
    jwks_refresh = 60
    with src.part():
        if (node := m.get("jwks_refresh_seconds")) is not None:
            jwks_refresh = _int(m, "jwks_refresh_seconds", node, 1, 86400)
    password_grant = False
    with src.part():
        if (node := m.get("password_grant")) is not None:
            password_grant = _bool(m, "password_grant", node)
    redirect_uri = None
    with src.part():
        if (node := m.get("redirect_uri")) is not None:
            redirect_uri = _str(m, "redirect_uri", node)
            parts = urlsplit(redirect_uri)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
                raise src.err(f"must be an absolute http(s) URL without #fragment, got {redirect_uri!r}",
                              m.key("redirect_uri"), node)
    if src.failed_since(before) or client_auth is None:
        raise _Recorded
    return OidcConfig(
        issuer=issuer,
        client_id=client_id,
        client_auth=client_auth,
        client_secret_env=secret_env,
        client_secret_file=secret_file,
        private_key_file=key_file,
        private_key_id=key_id,
        private_key_algorithm=key_alg,
        client_certificate_file=cert_file,
        scopes=tuple(scopes),
        email_claim=email_claim,
        signing_algorithms=tuple(algorithms),
        clock_skew=skew,
        ca_file=ca_file,
        discovery_refresh=timedelta(seconds=refresh),
        jwks_refresh_interval=timedelta(seconds=jwks_refresh),
        password_grant=password_grant,
        redirect_uri=redirect_uri,
    )


def _check_private_key(m: _Map, node: yaml.Node, file: Path) -> None:
    """The file must hold a PEM private key without a passphrase (the bridge signs client assertions with it)."""
    try:
        serialization.load_pem_private_key(file.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise m.src.err(f"{file} is not a PEM private key without passphrase ({exc})", m.key("private_key_file"),
                        node) from exc
    except OSError as exc:
        raise m.src.err(f"cannot read {file} ({exc.strerror or exc})", m.key("private_key_file"), node) from exc


def _check_certificate_of_key(m: _Map, node: yaml.Node, cert_file: Path, key_file: Path) -> None:
    """The certificate must be PEM and carry the public half of private_key_file (the IdP knows it by this one)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError) as exc:
        raise m.src.err(f"{cert_file} is not a PEM certificate ({exc})", m.key("client_certificate_file"),
                        node) from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise m.src.err(f"{cert_file} is not the certificate of private_key_file {key_file} (another public key)",
                        m.key("client_certificate_file"), node)


def _load_certs(src: _Src, key: str, node: yaml.Node, require_files: bool,
                warnings: list[str]) -> list[x509.Certificate]:
    """Every certificate in one PEM file; pinned keys must be RSA (the algorithms allowed are)."""
    file = src.resolve(_str_item(src, key, node))
    try:
        data = file.read_bytes()
    except FileNotFoundError as exc:
        if not require_files:
            warnings.append(f"{src.shown}: {key}: {file} does not exist yet")
            return []
        raise src.err(f"certificate file not found: {file}", key, node) from exc
    except OSError as exc:
        raise src.err(f"cannot read {file} ({exc.strerror})", key, node) from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise src.err(f"{file}: no readable PEM certificate in it", key, node) from exc
    now = datetime.now(UTC)
    for cert in certs:
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            raise src.err(f"{file}: certificate {cert.subject.rfc4514_string()} does not hold an RSA key",
                          key, node)
        expiry = cert.not_valid_after_utc
        subject = cert.subject.rfc4514_string()
        if expiry <= now:
            warnings.append(f"{src.shown}: {key}: certificate {subject} expired on {expiry:%Y-%m-%d}")
        elif expiry - now <= CERT_EXPIRY_WARNING:
            warnings.append(f"{src.shown}: {key}: certificate {subject} expires on {expiry:%Y-%m-%d} "
                            f"(in {(expiry - now).days} days)")
    return certs


# --------------------------------------------------------------------------
# Summary for `loginbridge config check`.


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint in the colon-separated form admin tools show."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _shown_store_url(url: str) -> str:
    """The store URL without a password (one can come from LOGINBRIDGE_STORE_URL)."""
    parts = urlsplit(url)
    if parts.password is None and "password=" not in parts.query:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username
    return parts._replace(netloc=f"{user}:***@{netloc}" if user else netloc, query="").geturl()


def summarize(config: BridgeConfig) -> str:
    """A human summary: tenants, endpoints, pinned certificates; never secrets."""
    lines = [
        f"config: {config.source}",
        f"listen: {config.listen_host}:{config.listen_port} (request head within "
        f"{config.listener_timeouts.header:g} s, idle connections closed after {config.listener_timeouts.idle:g} s)",
        f"trusted proxies: {', '.join(str(n) for n in config.trusted_proxies) or 'none (the client is the TCP peer)'}",
        f"state_dir: {config.state_dir}",
        f"store: {_shown_store_url(config.store_url)}",
        f"session ttl: {int(config.session_ttl.total_seconds())} s",
        f"idp client: connect {config.idp_client.connect_timeout:g} s, "
        f"total {config.idp_client.timeout:g} s, "
        f"{config.idp_client.max_connections_per_idp} connections per IdP",
        f"log level: {config.log_level}",
        f"hmac key: set ({len(config.hmac_key)} bytes)",
        f"tenants: {len(config.tenants)}",
    ]
    for t in config.tenants:
        lines.append(f"- {t.id}: {t.name} [{t.protocol.value}] ({t.source})")
        lines.append(f"    domains: {', '.join(t.domains)}")
        lines.append(f"    idp whitelist: {', '.join(str(n) for n in t.idp_whitelist)}")
        lines.append(f"    session ttl: {int(t.session_ttl.total_seconds())} s")
        certs: tuple[x509.Certificate, ...] = ()
        if t.wstrust is not None:
            w = t.wstrust
            lines.append(f"    adfs_url: {w.adfs_url or '-'}  endpoint: {w.endpoint or '(discover)'}")
            lines.append(f"    version: {w.version.value}  token: {w.token_type.value}  "
                         f"applies_to: {w.applies_to}")
            if w.recipient is not None:
                lines.append(f"    recipient: {w.recipient}")
            lines.append(f"    issuer: {w.issuer or '(from federation metadata)'}  "
                         f"federation_metadata: {'yes' if w.federation_metadata else 'no'}")
            lines.append(f"    algorithms: {', '.join(w.signature_algorithms)}  "
                         f"skew: {int(w.clock_skew.total_seconds())} s  subject: {w.subject_claim}")
            if w.ca_file is not None:
                lines.append(f"    ca_file: {w.ca_file}")
            certs = w.signing_certificates
        if t.saml2 is not None:
            s = t.saml2
            lines.append(f"    idp entity: {s.entity_id or '(from metadata)'}  sp entity: {s.sp_entity_id}")
            lines.append(f"    ecp_url: {s.ecp_url or '(none: password sign-in unavailable)'}")
            metadata = s.metadata_url or (str(s.metadata_file) if s.metadata_file else "-")
            lines.append(f"    metadata: {metadata}")
            lines.append(f"    algorithms: {', '.join(s.signature_algorithms)}  "
                         f"skew: {int(s.clock_skew.total_seconds())} s  subject: {s.subject_claim}")
            if s.ca_file is not None:
                lines.append(f"    ca_file: {s.ca_file}")
            certs = s.signing_certificates
        for cert in certs:
            lines.append(f"    cert: {cert.subject.rfc4514_string()}")
            lines.append(f"      sha256 {fingerprint(cert)}")
            lines.append(f"      valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    return "\n".join(lines)

