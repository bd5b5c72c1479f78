"""WS-MetadataExchange discovery of AD FS username/password (usernamemixed) endpoints.

Pure protocol code: :func:`parse_mex` reads the MEX document AD FS serves at
``/adfs/services/trust/mex`` and lists every endpoint a password client may
use; :func:`pick_endpoint` chooses one.  An endpoint counts only when the
whole chain holds: a WS-Policy requiring a WSS 1.0 UsernameToken as a signed
(encrypted) supporting token over a TransportBinding, a SOAP 1.2 over HTTP
binding referencing that policy whose Issue action names the WS-Trust
version, and a port using that binding at an https address.  A broken link
drops the endpoint, it never guesses (AD FS lists plain-http username ports).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

from bridge.errors import IdpProtocolError
from bridge.idp.wstrust.messages import WsTrustVersion, soap_action
from bridge.xml.safe import full_text, parse_untrusted

log = logging.getLogger(__name__)

MEX_MAX_BYTES = 1024 * 1024  # real farms send 40-60 KB; leave room for many endpoints

NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
NS_SOAP12_WSDL = "http://schemas.xmlsoap.org/wsdl/soap12/"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SOAP_HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
WSP_NAMESPACES = ("http://schemas.xmlsoap.org/ws/2004/09/policy", "http://www.w3.org/ns/ws-policy")
SP_NAMESPACES = (
    "http://schemas.xmlsoap.org/ws/2005/07/securitypolicy",
    "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200512",
    "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702",
)
WSA_NAMESPACES = ("http://www.w3.org/2005/08/addressing", "http://schemas.xmlsoap.org/ws/2004/08/addressing")
_SUPPORTING_TOKENS = ("SignedSupportingTokens", "SignedEncryptedSupportingTokens")
_VERSION_BY_ACTION = {soap_action(v): v for v in WsTrustVersion}


@dataclass(frozen=True, kw_only=True, slots=True)
class MexEndpoint:
    address: str
    version: WsTrustVersion


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    return (child for child in parent if isinstance(child.tag, str))


def _is(element: etree._Element, namespaces: Sequence[str], *locals_: str) -> bool:
    q = etree.QName(element)
    return q.namespace in namespaces and q.localname in locals_


def _alternative_fits(alternative: etree._Element) -> bool:
    """One policy alternative: TransportBinding plus a signed UsernameToken 1.0 side by side."""
    children = list(_elements(alternative))
    transport = any(_is(c, SP_NAMESPACES, "TransportBinding") for c in children)
    username = any(
        _is(c, SP_NAMESPACES, *_SUPPORTING_TOKENS)
        and any(_is(d, SP_NAMESPACES, "WssUsernameToken10") for d in c.iter() if isinstance(d.tag, str))
        for c in children
    )
    return transport and username


def _policy_fits(policy: etree._Element) -> bool:
    # WS-Policy 1.5 section 4.3: normal form is Policy/ExactlyOne/All; also accept the compact form.
    alternatives = (el for el in policy.iter() if isinstance(el.tag, str) and _is(el, WSP_NAMESPACES, "All"))
    candidates = [policy, *alternatives]
    return any(_alternative_fits(c) for c in candidates)


def _usable_policy_ids(root: etree._Element) -> frozenset[str]:
    seen: dict[str, bool] = {}
    for policy in root.iter(*(f"{{{ns}}}Policy" for ns in WSP_NAMESPACES)):
        policy_id = policy.get(f"{{{NS_WSU}}}Id") or policy.get("Id")
        if not policy_id:
            continue
        fits = _policy_fits(policy)
        # An id given to two policies is ambiguous: usable only if both fit.
        seen[policy_id] = seen.get(policy_id, True) and fits
    return frozenset(pid for pid, fits in seen.items() if fits)


def _binding_version(binding: etree._Element, policies: frozenset[str]) -> WsTrustVersion | None:
    refs = [
        (c.get("URI") or "").strip() for c in _elements(binding) if _is(c, WSP_NAMESPACES, "PolicyReference")
    ]
    if not any(ref.startswith("#") and ref[1:] in policies for ref in refs):
        return None
    soap = [c for c in _elements(binding) if _is(c, (NS_SOAP12_WSDL,), "binding")]
    if len(soap) != 1 or (soap[0].get("transport") or "").strip() != SOAP_HTTP_TRANSPORT:
        return None
    versions: set[WsTrustVersion] = set()
    for operation in _elements(binding):
        if not _is(operation, (NS_WSDL,), "operation"):
            continue
        for soap_op in _elements(operation):
            if _is(soap_op, (NS_SOAP12_WSDL,), "operation"):
                version = _VERSION_BY_ACTION.get((soap_op.get("soapAction") or "").strip())
                if version is not None:
                    versions.add(version)
    return versions.pop() if len(versions) == 1 else None


def _usable_bindings(root: etree._Element, policies: frozenset[str]) -> dict[tuple[str, str], WsTrustVersion]:
    """Map (targetNamespace, binding name) to the WS-Trust version of each usable binding."""
    target_ns = root.get("targetNamespace") or ""
    found: dict[tuple[str, str], WsTrustVersion | None] = {}
    for binding in root.iter(f"{{{NS_WSDL}}}binding"):
        name = (binding.get("name") or "").strip()
        if not name:
            continue
        key = (target_ns, name)
        version = _binding_version(binding, policies)
        # Two bindings of one name are ambiguous: drop the name.
        found[key] = None if key in found else version
    return {key: v for key, v in found.items() if v is not None}


def _resolve_qname(port: etree._Element, value: str) -> tuple[str, str] | None:
    prefix, _, local = value.strip().rpartition(":")
    if not local:
        return None
    if not prefix:  # unprefixed QName: the default namespace, or none
        return port.nsmap.get(None) or "", local
    namespace = port.nsmap.get(prefix)
    return (namespace, local) if namespace is not None else None


def _https(address: str) -> str | None:
    address = address.strip()
    try:
        parts = urlsplit(address)
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname or any(ch.isspace() for ch in address):
        return None
    return address


def _port_address(port: etree._Element) -> str | None:
    """soap12:address location, else wsa:EndpointReference/Address; https only."""
    for child in _elements(port):
        if _is(child, (NS_SOAP12_WSDL,), "address") and child.get("location") is not None:
            return _https(child.get("location") or "")
    for child in _elements(port):
        if _is(child, WSA_NAMESPACES, "EndpointReference"):
            for address in _elements(child):
                if _is(address, WSA_NAMESPACES, "Address"):
                    return _https(full_text(address))
    return None


def parse_mex(raw: bytes) -> tuple[MexEndpoint, ...]:
    """Every usable usernamemixed endpoint in the MEX document, WS-Trust 1.3 first.

    Unreadable XML raises :class:`~bridge.errors.XmlRejected`; a readable
    document with nothing usable returns an empty tuple.
    """
    root = parse_untrusted(raw, what="MEX document", max_bytes=MEX_MAX_BYTES)
    # The bare WSDL (a GET of /mex) or WSDL sections inside a mex:Metadata answer.
    definitions = list(root.iter(f"{{{NS_WSDL}}}definitions"))
    endpoints: list[MexEndpoint] = []
    for wsdl in definitions:
        bindings = _usable_bindings(wsdl, _usable_policy_ids(wsdl))
        for port in wsdl.iter(f"{{{NS_WSDL}}}port"):
            binding_ref = _resolve_qname(port, port.get("binding") or "")
            version = bindings.get(binding_ref) if binding_ref else None
            if version is None:
                continue
            address = _port_address(port)
            if address is None:
                log.info("MEX: port %s has no https address; skipped", port.get("name"))
                continue
            endpoint = MexEndpoint(address=address, version=version)
            if endpoint not in endpoints:
                endpoints.append(endpoint)
    order = list(WsTrustVersion)  # V13 first
    return tuple(sorted(endpoints, key=lambda e: order.index(e.version)))


def pick_endpoint(endpoints: Sequence[MexEndpoint], preferred: WsTrustVersion | None = None) -> MexEndpoint:
    """The first endpoint of the preferred version, else the first 1.3, else the first 2005."""
    order = list(WsTrustVersion)
    if preferred is not None:
        order.remove(preferred)
        order.insert(0, preferred)
    for version in order:
        for endpoint in endpoints:
            if endpoint.version is version:
                return endpoint
    raise IdpProtocolError("MEX lists no https WS-Trust usernamemixed endpoint")
