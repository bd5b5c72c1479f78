"""The console's tenant form: a tenant document as form fields plus an "advanced (YAML)" text, and back.

The fields hold the settings every tenant needs (id, name, domains, protocol, the IdP's addresses and
URLs, pinned signing certificates, session lifetime; for OpenID Connect the issuer, the client and how it
authenticates, the email claim and the password grant); the YAML text holds the rest of the document, so
editing a tenant never loses a key the form does not show.  Building the document, a filled-in field
wins over the YAML; a field left empty takes the YAML's value, if it has one (so a whole tenant file
pasted into the YAML text works too).  Only the section of the chosen protocol is built from the
fields.  The document is then validated by the tenant file's own rules (bridge/login/tenant_writes.py);
the configuration key of a refusal (``domains[1]``, ``wstrust.adfs_url``) is mapped back to the field
it came from, or to the YAML text when the value came from there.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from bridge.config import OIDC_EMAIL_CLAIMS, OidcClientAuth, Protocol

Kind = Literal["text", "lines", "number", "check", "choice"]
PROTOCOLS = tuple(p.value for p in Protocol)
# The protocols whose section pins signing certificates (the "idp" fields); an OpenID Connect provider
# publishes its keys in its JWK Set instead, so those fields mean nothing for it.
PINNING_PROTOCOLS = (Protocol.WSTRUST.value, Protocol.SAML2.value)
YAML_FIELD = "yaml"  # the advanced text
GENERAL = ""  # an error of the document as a whole (shown above the form)
MAX_YAML_CHARS = 60_000


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the input's name
    label: str
    kind: Kind
    key: str  # the document key, in the protocol's section when ``section`` is set
    section: Literal["", "idp", "wstrust", "saml2", "oidc"] = ""  # idp: the section of a pinning protocol
    hint: str = ""
    placeholder: str = ""
    # A choice field's values; empty: the protocols.  ``blank`` labels an extra empty option (the key is then
    # left out, so the YAML's value or the tenant file's default applies); None: no empty option.
    choices: tuple[str, ...] = ()
    blank: str | None = None

    def path(self, protocol: str) -> str | None:
        """The configuration key path this field writes, for a document of ``protocol``."""
        if not self.section:
            return self.key
        if self.section == "idp":
            return f"{protocol}.{self.key}" if protocol in PINNING_PROTOCOLS else None
        return f"{self.section}.{self.key}" if self.section == protocol else None

    def options(self) -> tuple[str, ...]:
        """The values a choice field offers (its own, else the protocols)."""
        return self.choices or PROTOCOLS


TENANT_FIELDS = (
    Field("id", "Tenant id", "text", "id", hint="Lower-case letters, digits and -. Cannot be changed later.",
          placeholder="contoso"),
    Field("name", "Display name", "text", "name", placeholder="Contoso Ltd"),
    Field("domains", "Email domains", "lines", "domains", hint="One per line: the users' email domains.",
          placeholder="contoso.com"),
    Field("idp_whitelist", "IdP IP whitelist", "lines", "idp_whitelist",
          hint="One CIDR network per line: the IdP's addresses. Passwords go nowhere else.",
          placeholder="203.0.113.10/32"),
    Field("session_ttl_seconds", "Session lifetime (seconds)", "number", "session_ttl_seconds",
          hint="60 to 2592000. Empty: the bridge's default."),
)
IDP_FIELDS = (
    Field("protocol", "Protocol", "choice", "protocol"),
    Field("signing_certificates", "Signing certificate files", "lines", "signing_certificates", section="idp",
          hint="PEM files on the bridge's host, one path per line (relative: to the tenants directory). "
               "WS-Trust and SAML only: an OpenID Connect provider's keys come from its JWK Set.",
          placeholder="certs/contoso-token-signing.pem"),
)
WSTRUST_FIELDS = (
    Field("wstrust.adfs_url", "AD FS URL", "text", "adfs_url", section="wstrust",
          hint="The base URL; the endpoint is found through MEX.", placeholder="https://sts.contoso.com"),
    Field("wstrust.endpoint", "usernamemixed endpoint", "text", "endpoint", section="wstrust",
          hint="Only when MEX is not published."),
    Field("wstrust.applies_to", "Relying party (applies_to)", "text", "applies_to", section="wstrust",
          placeholder="urn:loginbridge:contoso.com"),
    Field("wstrust.federation_metadata", "Also trust the certificates in FederationMetadata.xml", "check",
          "federation_metadata", section="wstrust"),
)
SAML2_FIELDS = (
    Field("saml2.metadata_url", "IdP metadata URL", "text", "metadata_url", section="saml2",
          placeholder="https://idp.contoso.com/idp/shibboleth"),
    Field("saml2.ecp_url", "ECP endpoint", "text", "ecp_url", section="saml2", hint="Empty: from the metadata."),
    Field("saml2.entity_id", "IdP entity id", "text", "entity_id", section="saml2",
          hint="Empty: from the metadata."),
    Field("saml2.sp_entity_id", "The bridge's SP entity id", "text", "sp_entity_id", section="saml2",
          placeholder="urn:loginbridge:contoso.com"),
)
OIDC_FIELDS = (
    Field("oidc.issuer", "Issuer", "text", "issuer", section="oidc",
          hint="Exactly as the provider's discovery document names it (a trailing / matters); "
               "{issuer}/.well-known/openid-configuration is read.",
          placeholder="https://login.microsoftonline.com/TENANT-ID/v2.0"),
    Field("oidc.client_id", "Client id", "text", "client_id", section="oidc",
          hint="The application (client) id of the bridge's registration at the provider."),
    Field("oidc.client_auth", "Client authentication", "choice", "client_auth", section="oidc",
          choices=tuple(a.value for a in OidcClientAuth), blank="(from the YAML)",
          hint="client_secret_basic: a secret from an environment variable or a file; private_key_jwt: "
               "private_key_file in the YAML; none: a public client (PKCE only)."),
    Field("oidc.client_secret_env", "Client secret: environment variable", "text", "client_secret_env",
          section="oidc", hint="The variable's name, never the secret (client_secret_basic).",
          placeholder="LOGINBRIDGE_CONTOSO_SECRET"),
    Field("oidc.client_secret_file", "Client secret: file", "text", "client_secret_file", section="oidc",
          hint="Or a file on the bridge's host holding only the secret (chmod 600).",
          placeholder="secrets/contoso-client-secret"),
    Field("oidc.email_claim", "Email claim", "choice", "email_claim", section="oidc", choices=OIDC_EMAIL_CLAIMS,
          blank="(default: email)",
          hint="The ID token claim that holds the user's email address (Entra ID: preferred_username)."),
    Field("oidc.password_grant", "Allow password prompts (OAuth 2.0 password grant)", "check", "password_grant",
          section="oidc", hint="Only where the provider allows it for this client; never with MFA. Off: phone "
                               "pairing only."),
)
ALL_FIELDS = TENANT_FIELDS + IDP_FIELDS + WSTRUST_FIELDS + SAML2_FIELDS + OIDC_FIELDS


@dataclass
class TenantForm:
    """What the form shows: the fields' texts, the YAML text and the errors by field name."""

    values: dict[str, str] = field(default_factory=dict)
    yaml_text: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    from_yaml: set[str] = field(default_factory=set)  # key paths whose value the YAML gave (its field was empty)
    protocol: str = ""  # the protocol the document was built for (the field's, else the YAML's)

    def error_at(self, key: str, detail: str, *, id_shown: bool = True) -> None:
        """Place a refusal naming configuration key ``key`` at its field (first one wins)."""
        name = field_for(key, self.protocol, self.from_yaml, id_shown=id_shown)
        self.errors.setdefault(name, detail)


def field_for(key: str, protocol: str, from_yaml: Collection[str] = (), *, id_shown: bool = True) -> str:
    """The form field a configuration key path belongs to (YAML_FIELD for the rest, GENERAL for none)."""
    if not key:
        return GENERAL
    base = re.sub(r"\[\d+\]", "", key)
    if base in from_yaml:
        return YAML_FIELD
    for item in ALL_FIELDS:
        if item.path(protocol) == base:
            return GENERAL if item.name == "id" and not id_shown else item.name
    if base == protocol:  # the section as a whole ("give adfs_url or endpoint")
        return protocol
    return YAML_FIELD


# -- document -> form -------------------------------------------------------------------------------------


def _shown(item: Field, value: object) -> str | None:
    """The field's text for a document value, or None when the field cannot show it (it stays in the YAML)."""
    if item.kind in ("text", "choice"):
        return value if isinstance(value, str) else None
    if item.kind == "lines":
        if isinstance(value, list) and all(isinstance(v, str) and "\n" not in v for v in value):
            return "\n".join(value)
        return None
    if item.kind == "number":
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    return "on" if value is True else "" if value is False else None


def form_of(document: Mapping[str, Any]) -> TenantForm:
    """A stored document as the form: the fields it fills, the rest as YAML."""
    rest = copy.deepcopy(dict(document))
    protocol = rest.get("protocol") if rest.get("protocol") in PROTOCOLS else ""
    values: dict[str, str] = {}
    for item in ALL_FIELDS:
        path = item.path(str(protocol))
        if path is None:
            continue
        holder: Any = rest
        section, _, key = path.rpartition(".")
        if section:
            holder = rest.get(section)
            if not isinstance(holder, dict):
                continue
        if key not in holder:
            continue
        shown = _shown(item, holder[key])
        if shown is not None:
            values[item.name] = shown
            del holder[key]
    if protocol and rest.get(protocol) == {}:
        del rest[protocol]
    return TenantForm(values=values, yaml_text=dump_yaml(rest), protocol=str(protocol))


def dump_yaml(document: Mapping[str, Any]) -> str:
    if not document:
        return ""
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, default_flow_style=False, width=96)


# -- form -> document -------------------------------------------------------------------------------------


def _value(item: Field, text: str) -> object | None:
    """The document value a field's text stands for (None: the field is empty)."""
    if item.kind == "lines":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines or None
    text = text.strip()
    if item.kind == "check":
        return True if text else None
    if not text:
        return None
    if item.kind == "number" and text.isdigit():
        return int(text)
    return text  # a number field's other text: the tenant file's check names it


def _advanced(text: str) -> dict[str, Any] | str:
    """The YAML text as a mapping, or why it is not one."""
    if len(text) > MAX_YAML_CHARS:
        return f"at most {MAX_YAML_CHARS} characters"
    if not text.strip():
        return {}
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                return "anchors and aliases (*name) are not accepted here: write the values out"
        parsed = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return f"YAML syntax error{where}: {exc.problem or exc.context or 'cannot be read'}"
    except yaml.YAMLError as exc:
        return f"YAML error: {exc}"
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        return "expected settings as keys and values (like throttle:, directory:), not a single value or a list"
    # JSON data only (the document is stored as JSON); a value JSON has no type for becomes text.
    result: dict[str, Any] = json.loads(json.dumps(parsed, default=str))
    return result


def document_of_form(posted: Mapping[str, str], *, tenant_id: str | None) -> tuple[dict[str, Any] | None, TenantForm]:
    """The document a posted form stands for (None when the form itself is not usable), and the form to show.

    ``tenant_id``: the tenant being edited (its id is fixed), or None when creating one.
    """
    names = [item.name for item in ALL_FIELDS if not (item.name == "id" and tenant_id is not None)]
    form = TenantForm(values={name: posted.get(name, "") for name in names},
                      yaml_text=posted.get(YAML_FIELD, "").replace("\r\n", "\n"))
    if tenant_id is not None:
        form.values["id"] = tenant_id
    advanced = _advanced(form.yaml_text)
    if isinstance(advanced, str):
        form.errors[YAML_FIELD] = advanced
        return None, form
    document = advanced
    protocol = form.protocol = form.values.get("protocol", "").strip() or str(document.get("protocol", ""))
    section: dict[str, Any] | None = None
    if protocol in PROTOCOLS:
        found = document.get(protocol, {})
        if not isinstance(found, dict):
            form.errors[YAML_FIELD] = f"{protocol}: expected a section of keys and values"
            return None, form
        section = document[protocol] = dict(found)
    for item in ALL_FIELDS:
        path = item.path(protocol)
        if path is None:
            continue  # the other protocol's fields are not used
        holder = document if not item.section else section
        if holder is None:
            continue
        key = path.rpartition(".")[2]
        value = _value(item, form.values.get(item.name, ""))
        if value is not None:
            holder[key] = value
        elif key in holder:
            form.from_yaml.add(path)
    return document, form
