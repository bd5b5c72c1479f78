"""The simulated Shibboleth-style ECP IdP, built on pysaml2's own IdP (``saml2.server.Server``).

pysaml2 parses the AuthnRequest and builds the Response (unsigned); the
signatures are then made with :func:`bridge.xml.signature.sign_enveloped` (one
in-process signing per login, no xmlsec1 subprocess), and the assertion is
encrypted for the SP with pysaml2's xmlsec1 backend when asked, as Shibboleth
does by default.  Order, as a real IdP does it: sign the assertion, encrypt
it, then sign the Response over the EncryptedAssertion.

The same IdP answers SAML Web Browser SSO (:mod:`bridge.idpsim.browser`): its
pysaml2 Server also knows the HTTP-Redirect and HTTP-POST SingleSignOnService
endpoints, and :meth:`EcpIdp.build_response` / :meth:`EcpIdp.error_response`
give the bare Response that binding posts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import functools
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from lxml import etree
from saml2 import BINDING_HTTP_POST as PYSAML2_BINDING_HTTP_POST
from saml2 import BINDING_HTTP_REDIRECT as PYSAML2_BINDING_HTTP_REDIRECT
from saml2 import BINDING_SOAP as PYSAML2_BINDING_SOAP
from saml2.config import IdPConfig
from saml2.saml import NAME_FORMAT_URI, NameID
from saml2.samlp import STATUS_AUTHN_FAILED, STATUS_REQUEST_DENIED, STATUS_RESPONDER
from saml2.server import Server
from saml2.sigver import RSA_OAEP_MGF1P, pre_encryption_part

from bridge.errors import BridgeError, ConfigError, RequestError
from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.ecp.documents import BINDING_PAOS, NAMEID_EMAIL, ecp_response_envelope, sp_entity_id
from bridge.idpsim.ecp.settings import EcpControls, EcpMischief
from bridge.idpsim.issuance import WRONG_AUDIENCE, SigningMaterial
from bridge.idpsim.keys import generate_signing_pair
from bridge.idpsim.tokens import saml_datetime
from bridge.xml.safe import parse_untrusted
from bridge.xml.signature import NS_SAML2, NS_SAMLP2, SignatureAlgorithm, sign_enveloped

log = logging.getLogger(__name__)

ECP_PATH = "/idp/profile/SAML2/SOAP/ECP"
ENTITY_PATH = "/idp/shibboleth"
# Web Browser SSO (saml-profiles 4.1), Shibboleth's paths; served by bridge.idpsim.browser.
REDIRECT_SSO_PATH = "/idp/profile/SAML2/Redirect/SSO"
POST_SSO_PATH = "/idp/profile/SAML2/POST/SSO"
WRONG_DESTINATION = "https://wrong-destination.invalid/Shibboleth.sso/SAML2/ECP"
AUTHN_CONTEXT_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105
AUTHN_CONTEXT_MFA = "https://refeds.org/profile/mfa"  # REFEDS MFA profile: what Shibboleth's MFA flow asserts
CLAIM_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
MAX_REQUEST_BYTES = 64 * 1024
_MAX_SERVERS = 8  # one pysaml2 Server per base URL seen (Host header); bounded
_NSPAIR = {"saml2p": NS_SAMLP2, "saml2": NS_SAML2}
_SCRATCH_XPATH = "/scratch/*[local-name()='Assertion']"
_TIME_ATTRIBUTES = ("IssueInstant", "NotBefore", "NotOnOrAfter", "AuthnInstant", "SessionNotOnOrAfter")


class _SimServer(Server):  # type: ignore[misc]  # pysaml2 ships no type information
    """pysaml2's Server, tolerating SPs it has no metadata for (the ``trust_any_sp`` demo mode)."""

    def has_encrypt_cert_in_metadata(self, sp_entity_id: str | None) -> bool:
        if self.metadata is None:
            return False
        try:
            return bool(super().has_encrypt_cert_in_metadata(sp_entity_id))
        except KeyError:
            return False


@dataclass(frozen=True, kw_only=True, slots=True)
class EcpAuthnRequest:
    """What the SP asked for, as pysaml2 parsed it."""

    request_id: str
    sp_entity_id: str
    acs_url: str | None
    protocol_binding: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AcsDecision:
    """Where the answer goes, or why the SP is refused."""

    acs_url: str
    refusal: str | None = None  # None: trusted


@functools.cache
def _stranger_pair() -> tuple[bytes, bytes]:
    """A signing identity no metadata names (RSA keygen is slow: once per process)."""
    return generate_signing_pair("not-the-ecp-idp.invalid")


def _xmlsec_binary() -> str:
    # pysaml2 wants a path even when nothing is encrypted; encryption then fails cleanly.
    return shutil.which("xmlsec1") or "/usr/bin/xmlsec1"


class EcpIdp:
    """One simulated IdP: its trusted SPs and a pysaml2 Server per base URL."""

    def __init__(self, *, config: SimConfig, signing: SigningMaterial) -> None:
        self._config = config
        self._signing = signing
        self._sp_metadata: dict[str, str] = {}
        self._servers: OrderedDict[str, _SimServer] = OrderedDict()
        self._lock = asyncio.Lock()
        self._build_lock = threading.Lock()

    @property
    def config(self) -> SimConfig:
        return self._config

    @property
    def signing(self) -> SigningMaterial:
        return self._signing

    def trusted_sps(self) -> tuple[str, ...]:
        return tuple(sorted(self._sp_metadata))

    def add_sp_metadata(self, raw: bytes) -> str:
        """Trust the SP described by ``raw`` (replacing an earlier entry); returns its entityID.

        The document is loaded by pysaml2 once here, so a bad one is refused now, not at login.
        """
        entity_id, candidate = _checked_sp_metadata(raw, dict(self._sp_metadata), self._config)
        self._commit(entity_id, candidate)
        return entity_id

    async def add_sp_metadata_async(self, raw: bytes) -> str:
        """:meth:`add_sp_metadata` with pysaml2's loading (about 0.1 s) off the event loop."""
        entity_id, candidate = await asyncio.to_thread(_checked_sp_metadata, raw, dict(self._sp_metadata), self._config)
        async with self._lock:
            self._commit(entity_id, {**self._sp_metadata, entity_id: candidate[entity_id]})
        return entity_id

    def _commit(self, entity_id: str, candidate: dict[str, str]) -> None:
        self._sp_metadata = candidate
        self._servers.clear()
        log.info("ECP IdP now trusts SP %s", entity_id)

    async def server_for(self, base_url: str) -> _SimServer:
        """The pysaml2 Server whose entityID and endpoint live under ``base_url``."""
        async with self._lock:
            server = self._servers.get(base_url)
            if server is None:
                server = await asyncio.to_thread(_build_server, base_url, dict(self._sp_metadata), self._config)
                self._servers[base_url] = server
                while len(self._servers) > _MAX_SERVERS:
                    self._servers.popitem(last=False)
            else:
                self._servers.move_to_end(base_url)
            return server

    def parse_request(self, server: _SimServer, raw: bytes) -> EcpAuthnRequest:
        """Parse the SOAP-wrapped AuthnRequest; RequestError (or XmlRejected) for anything unreadable."""
        parse_untrusted(raw, what="ECP request", max_bytes=MAX_REQUEST_BYTES)
        return _parsed(server, raw.decode("utf-8"), PYSAML2_BINDING_SOAP)

    def parse_browser_request(self, server: _SimServer, encoded: str, binding: str) -> EcpAuthnRequest:
        """Parse an AuthnRequest as the HTTP-Redirect or HTTP-POST binding carries it (``SAMLRequest``).

        The caller has already decoded it within bounds and checked any signature
        (pysaml2 re-serialises a request before verifying it, which breaks signatures
        made by others); ``binding`` picks the endpoint its Destination must name.
        """
        return _parsed(server, encoded, binding)

    def is_registered(self, sp_entity_id: str) -> bool:
        """Whether the SP's metadata was registered (then its certificates and ACS list apply)."""
        return sp_entity_id in self._sp_metadata

    def sp_signing_certificates(self, server: _SimServer, sp_entity_id: str) -> tuple[x509.Certificate, ...]:
        """The signing certificates the SP's registered metadata names (none when unregistered)."""
        if server.metadata is None or not self.is_registered(sp_entity_id):
            return ()
        try:
            certs: Any = server.metadata.certs(sp_entity_id, "spsso", "signing")
        except KeyError:
            return ()
        found: list[x509.Certificate] = []
        for entry in certs or []:
            try:
                der = base64.b64decode("".join(str(entry[1]).split()), validate=True)
                found.append(x509.load_der_x509_certificate(der))
            except (binascii.Error, ValueError, IndexError, TypeError):
                log.warning("ignoring an unreadable signing certificate in the metadata of %s", sp_entity_id)
        return tuple(found)

    def resolve_acs(
        self, server: _SimServer, request: EcpAuthnRequest, *, trust_any_sp: bool, binding: str = BINDING_PAOS
    ) -> AcsDecision:
        """The ACS URL to answer to; a refusal when the SP or its ACS is not known (Shibboleth's checks).

        ``binding`` is the one the answer travels by: PAOS for ECP, HTTP-POST for the browser.
        """
        fallback = request.acs_url or ""
        if request.sp_entity_id not in self._sp_metadata:
            if trust_any_sp and request.acs_url:
                return AcsDecision(acs_url=request.acs_url)
            return AcsDecision(acs_url=fallback, refusal="unknown service provider")
        try:
            endpoints: Any = (
                []
                if server.metadata is None
                else server.metadata.assertion_consumer_service(request.sp_entity_id, binding)
            )
        except Exception:  # pysaml2: UnsupportedBinding / UnknownSystemEntity
            endpoints = []
        locations = [str(e.get("location")) for e in endpoints or [] if isinstance(e, dict)]
        if request.acs_url is None:
            if locations:
                return AcsDecision(acs_url=locations[0])
            name = binding.rsplit(":", 1)[-1]
            return AcsDecision(acs_url="", refusal=f"the SP has no {name} AssertionConsumerService")
        if request.acs_url in locations:
            return AcsDecision(acs_url=request.acs_url)
        return AcsDecision(acs_url=fallback, refusal="AssertionConsumerServiceURL not in the SP's metadata")

    def error_envelope(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        *,
        acs_url: str,
        codes: tuple[str, ...],
        message: str | None,
        controls: EcpControls,
    ) -> bytes:
        """:meth:`error_response` in the ECP SOAP envelope."""
        root = self.error_response(server, request, acs_url=acs_url, codes=codes, message=message, controls=controls)
        return ecp_response_envelope(root, acs_url=acs_url)

    def error_response(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        *,
        acs_url: str,
        codes: tuple[str, ...],
        message: str | None,
        controls: EcpControls,
    ) -> etree._Element:
        """A Response whose Status holds ``codes`` (top-level first) and ``message``, no assertion.

        pysaml2 builds the Response (its error_status_factory always nests one
        code under Responder); the Status is then written as asked, so every
        shape real IdPs send can be played (saml-core section 3.2.2).  Signing
        is CPU work: callers on the event loop run this in a worker thread.
        """
        response = server.create_error_response(
            request.request_id, acs_url or None, (codes[-1], message or ""), sign=False
        )
        root = _to_lxml(response)
        _set_status(root, codes, message)
        if controls.sign_response:
            root = self._sign(root, wrong_key=False)
        return root

    def authn_failed(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        *,
        acs_url: str,
        controls: EcpControls,
        codes: tuple[str, ...] = (STATUS_RESPONDER, STATUS_AUTHN_FAILED),
        message: str | None = None,
    ) -> bytes:
        """A refused password as a SAML status (Shibboleth's Responder/AuthnFailed unless told otherwise)."""
        return self.error_envelope(
            server, request, acs_url=acs_url, codes=codes, message=message, controls=controls
        )

    def request_denied(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        *,
        acs_url: str,
        reason: str,
        controls: EcpControls,
    ) -> bytes:
        return self.error_envelope(
            server, request, acs_url=acs_url, codes=(STATUS_RESPONDER, STATUS_REQUEST_DENIED), message=reason,
            controls=controls,
        )

    async def issue(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        user: SimUser,
        *,
        acs_url: str,
        controls: EcpControls,
        now: datetime | None = None,
    ) -> bytes:
        """The SOAP envelope with the Response for ``user``, shaped by the controls and their mischief."""
        root = await self.build_response(server, request, user, acs_url=acs_url, controls=controls, now=now)
        return ecp_response_envelope(root, acs_url=acs_url)

    async def build_response(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        user: SimUser,
        *,
        acs_url: str,
        controls: EcpControls,
        authn_class: str = AUTHN_CONTEXT_PASSWORD,
        now: datetime | None = None,
    ) -> etree._Element:
        """The samlp:Response for ``user`` (ECP and Web Browser SSO alike), shaped by the controls.

        pysaml2's building and the signing run in worker threads: both are CPU
        work that would otherwise stall every other login on the event loop.
        """
        when = now or datetime.now(UTC)
        root, assertion, forged = await asyncio.to_thread(
            self._signed_assertion_response, server, request, user, acs_url, controls, authn_class, when
        )
        mischief = controls.mischief
        signs = mischief is not EcpMischief.UNSIGNED
        if controls.encrypt_assertion:
            root = await self._encrypt(server, root, assertion, request.sp_entity_id, controls)
        if signs and controls.sign_response:
            root = await asyncio.to_thread(self._sign, root, wrong_key=mischief is EcpMischief.WRONG_KEY)
            if mischief is EcpMischief.TAMPERED_RESPONSE:
                # Outside the assertion: only the Response's own signature breaks.
                root.set("IssueInstant", saml_datetime(when - timedelta(days=1)))
        if forged is not None:
            # After every signature: a forgery the signatures do not cover.
            first = _first_assertion_slot(root)
            first.addprevious(forged)
        return root

    def _signed_assertion_response(
        self,
        server: _SimServer,
        request: EcpAuthnRequest,
        user: SimUser,
        acs_url: str,
        controls: EcpControls,
        authn_class: str,
        when: datetime,
    ) -> tuple[etree._Element, etree._Element, etree._Element | None]:
        """(Response, its assertion signed as the controls say, an unsigned forgery or None); blocking."""
        mischief = controls.mischief
        subject_mail, subject_upn = user.email, user.upn
        if mischief is EcpMischief.WRAP:
            subject_mail = subject_upn = controls.mischief_subject
        in_response_to = request.request_id
        if mischief is EcpMischief.WRONG_IN_RESPONSE_TO:
            in_response_to = "_" + uuid.uuid4().hex
        destination = WRONG_DESTINATION if mischief is EcpMischief.WRONG_DESTINATION else acs_url
        identity = {
            "mail": [subject_mail],
            "eduPersonPrincipalName": [subject_upn],
            "displayName": [user.display_name],
            CLAIM_UPN: [subject_upn],
        }
        try:
            with self._build_lock:  # one pysaml2 Server, shared by the worker threads
                response = server.create_authn_response(
                    identity,
                    in_response_to,
                    destination,
                    request.sp_entity_id,
                    name_id=NameID(format=NAMEID_EMAIL, text=subject_mail),
                    authn={"class_ref": authn_class},
                    sign_assertion=False,
                    sign_response=False,
                    encrypt_assertion=False,
                )
        except Exception as exc:  # pysaml2's own failures: the simulator's problem, not the client's
            raise EcpIssueError(f"pysaml2 could not build the Response: {type(exc).__name__}") from exc
        root = _to_lxml(response)
        assertion = _the_assertion(root)
        forged: etree._Element | None = None
        if mischief is EcpMischief.WRAP:
            forged = _forge_for(assertion, user)
        if mischief is EcpMischief.EXPIRED:
            _move_times(
                assertion,
                issued=when - self._config.token_lifetime - timedelta(minutes=10),
                lifetime=self._config.token_lifetime,
            )
        elif mischief is EcpMischief.WRONG_AUDIENCE:
            for audience in assertion.iter(f"{{{NS_SAML2}}}Audience"):
                audience.text = WRONG_AUDIENCE
        if mischief is not EcpMischief.UNSIGNED and controls.sign_assertion:
            signed = self._sign(assertion, wrong_key=mischief is EcpMischief.WRONG_KEY)
            root.replace(assertion, signed)
            assertion = signed
        return root, assertion, forged

    def _sign(self, element: etree._Element, *, wrong_key: bool) -> etree._Element:
        key_pem, cert_pem = _stranger_pair() if wrong_key else (self._signing.key_pem, self._signing.cert_pem)
        return sign_enveloped(
            element,
            key_pem=key_pem,
            cert_pem=cert_pem,
            algorithm=SignatureAlgorithm(self._signing.algorithm.value),
        )

    async def _encrypt(
        self,
        server: _SimServer,
        root: etree._Element,
        assertion: etree._Element,
        sp: str,
        controls: EcpControls,
    ) -> etree._Element:
        """EncryptedAssertion for the SP's encryption certificate (xmlsec1 through pysaml2, off the loop)."""
        try:
            certs: Any = [] if server.metadata is None else server.metadata.certs(sp, "spsso", "encryption")
        except KeyError:
            certs = []
        if not certs:
            raise EcpIssueError("no encryption certificate for the SP: register its metadata")
        cert_b64 = "".join(str(certs[0][1]).split())
        # Self-contained, as Shibboleth encrypts it: the plaintext must parse on its own.  xmlsec1
        # encrypts the node as written, and lxml drops a moved node's namespace declarations that
        # its new ancestors already make, so the Assertion is encrypted under a namespace-free wrapper.
        standalone = etree.fromstring(etree.tostring(assertion), parser=_trusted_parser())
        scratch = etree.Element("scratch")
        scratch.append(standalone)
        template = pre_encryption_part(
            msg_enc=controls.encryption_algorithm.uri, key_enc=RSA_OAEP_MGF1P, encrypt_cert=cert_b64
        )
        encrypted = await asyncio.to_thread(
            _run_encrypt,
            server,
            etree.tostring(scratch, encoding="unicode"),
            str(template),
            cert_b64,
            controls.encryption_algorithm.session_key,
        )
        sealed = etree.fromstring(encrypted.encode("utf-8"), parser=_trusted_parser())
        holder = etree.Element(f"{{{NS_SAML2}}}EncryptedAssertion", nsmap={"saml2": NS_SAML2})
        holder.extend(list(sealed))
        root.replace(assertion, holder)
        return root


class EcpIssueError(BridgeError):
    """The simulator cannot build the answer asked for (misconfiguration, not the client's fault)."""

    code = "ecp_sim_error"


def _run_encrypt(server: _SimServer, document: str, template: str, cert_b64: str, session_key: str) -> str:
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + "\n".join(cert_b64[i : i + 64] for i in range(0, len(cert_b64), 64))
        + "\n-----END CERTIFICATE-----\n"
    )
    fd, path = tempfile.mkstemp(prefix="idpsim-ecp-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(pem)
        try:
            result = server.sec.encrypt_assertion(
                document, path, template, key_type=session_key, node_xpath=_SCRATCH_XPATH
            )
        except Exception as exc:  # pysaml2 EncryptError / OSError when xmlsec1 is missing
            raise EcpIssueError(f"assertion encryption failed: {type(exc).__name__}") from exc
    finally:
        os.unlink(path)
    return str(result)


def _parsed(server: _SimServer, text: str, binding: str) -> EcpAuthnRequest:
    try:
        parsed = server.parse_authn_request(text, binding)
    except Exception as exc:  # pysaml2 raises a wide variety; all mean "bad request"
        raise RequestError(f"AuthnRequest refused: {type(exc).__name__}") from exc
    message = getattr(parsed, "message", None)
    issuer = getattr(message, "issuer", None)
    if message is None or issuer is None or not getattr(issuer, "text", None):
        raise RequestError("AuthnRequest has no Issuer")
    request_id = getattr(message, "id", None)
    if not request_id:
        raise RequestError("AuthnRequest has no ID")
    return EcpAuthnRequest(
        request_id=str(request_id),
        sp_entity_id=str(issuer.text).strip(),
        acs_url=_opt_str(getattr(message, "assertion_consumer_service_url", None)),
        protocol_binding=_opt_str(getattr(message, "protocol_binding", None)),
    )


def _trusted_parser() -> etree.XMLParser:
    # Our own xmlsec1 output: still no entities or network.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None


def _to_lxml(response: Any) -> etree._Element:
    """pysaml2's Response (or, on its error paths, a list of lines) as an lxml element."""
    if isinstance(response, list):
        text = "\n".join(str(line) for line in response).encode("utf-8")
    elif hasattr(response, "to_string"):
        text = response.to_string(_NSPAIR)
    else:
        text = str(response).encode("utf-8")
    return etree.fromstring(text, parser=_trusted_parser())


def _set_status(response: etree._Element, codes: tuple[str, ...], message: str | None) -> None:
    """Replace the Response's Status with nested StatusCodes ``codes`` and, if given, a StatusMessage."""
    samlp = f"{{{NS_SAMLP2}}}"
    status = response.find(f"{samlp}Status")
    if status is None:
        raise EcpIssueError("pysaml2 built an error Response without a Status")
    for child in list(status):
        status.remove(child)
    parent = status
    for code in codes:  # SubElement keeps the Response's own prefix for samlp
        parent = etree.SubElement(parent, f"{samlp}StatusCode", Value=code)
    if message:
        etree.SubElement(status, f"{samlp}StatusMessage").text = message


def _the_assertion(root: etree._Element) -> etree._Element:
    assertion = root.find(f"{{{NS_SAML2}}}Assertion")
    if assertion is None:
        raise EcpIssueError("pysaml2 built a Response without an Assertion")
    return assertion


def _first_assertion_slot(root: etree._Element) -> etree._Element:
    for child in root:
        if child.tag in (f"{{{NS_SAML2}}}Assertion", f"{{{NS_SAML2}}}EncryptedAssertion"):
            return child
    raise EcpIssueError("Response lost its assertion")


def _forge_for(assertion: etree._Element, user: SimUser) -> etree._Element:
    """Unsigned copy naming ``user`` (taken before signing), with its own ID."""
    forged = copy.deepcopy(assertion)
    forged.set("ID", "_" + uuid.uuid4().hex)
    for node in forged.iter(f"{{{NS_SAML2}}}NameID"):
        node.text = user.email
    for value in forged.iter(f"{{{NS_SAML2}}}AttributeValue"):
        parent = value.getparent()
        if parent is None:
            continue
        friendly = parent.get("FriendlyName")
        if friendly == "mail":
            value.text = user.email
        elif friendly == "eduPersonPrincipalName" or parent.get("Name") == CLAIM_UPN:
            value.text = user.upn
    return forged


def _move_times(assertion: etree._Element, *, issued: datetime, lifetime: timedelta) -> None:
    start, end = saml_datetime(issued), saml_datetime(issued + lifetime)
    for element in assertion.iter():
        for name in _TIME_ATTRIBUTES:
            if element.get(name) is not None:
                element.set(name, end if name.endswith("NotOnOrAfter") else start)


def _checked_sp_metadata(raw: bytes, current: dict[str, str], config: SimConfig) -> tuple[str, dict[str, str]]:
    """(entityID, metadata set including it) once pysaml2 has loaded the new set; RequestError if not."""
    entity_id = sp_entity_id(raw)
    candidate = {**current, entity_id: raw.decode("utf-8")}
    try:
        _build_server("https://metadata-check.invalid", candidate, config)
    except ConfigError as exc:
        raise RequestError("SP metadata could not be loaded") from exc
    return entity_id, candidate


def _build_server(base_url: str, sp_metadata: dict[str, str], config: SimConfig) -> _SimServer:
    """pysaml2's IdP configured in-process: entityID and SOAP SSO endpoint under ``base_url``."""
    lifetime = max(int(config.token_lifetime.total_seconds()), 60)
    conf: dict[str, Any] = {
        "entityid": base_url + ENTITY_PATH,
        "service": {
            "idp": {
                "name": "loginbridge idp-sim ECP",
                "endpoints": {
                    "single_sign_on_service": [
                        (base_url + ECP_PATH, PYSAML2_BINDING_SOAP),
                        (base_url + REDIRECT_SSO_PATH, PYSAML2_BINDING_HTTP_REDIRECT),
                        (base_url + POST_SSO_PATH, PYSAML2_BINDING_HTTP_POST),
                    ]
                },
                "name_id_format": [NAMEID_EMAIL],
                "policy": {"default": {"lifetime": {"seconds": lifetime}, "name_form": NAME_FORMAT_URI}},
            }
        },
        "xmlsec_binary": _xmlsec_binary(),
        "delete_tmpfiles": True,
    }
    if sp_metadata:
        conf["metadata"] = {"inline": list(sp_metadata.values())}
    try:
        idp_config = IdPConfig().load(conf)
        return _SimServer(config=idp_config)
    except Exception as exc:
        raise ConfigError(f"pysaml2 IdP configuration refused: {type(exc).__name__}") from exc


__all__ = [
    "AUTHN_CONTEXT_MFA",
    "AUTHN_CONTEXT_PASSWORD",
    "ECP_PATH",
    "ENTITY_PATH",
    "POST_SSO_PATH",
    "REDIRECT_SSO_PATH",
    "AcsDecision",
    "EcpAuthnRequest",
    "EcpIdp",
    "EcpIssueError",
]
