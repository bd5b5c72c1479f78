"""bridge.idp.wstrust.mex: usernamemixed endpoint discovery from real and broken AD FS MEX documents."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.errors import BridgeError, IdpProtocolError, XmlRejected
from bridge.idp.wstrust.messages import WsTrustVersion
from bridge.idp.wstrust.mex import MexEndpoint, parse_mex, pick_endpoint
from tests.paths import VECTORS

MEX_DIR = VECTORS / "adfs" / "mex"
V13, V2005 = WsTrustVersion.V13, WsTrustVersion.V2005
ARCHAN = "https://arvmserver2012.archan.us/adfs/services/trust"
ARCHAN_BOTH = ((V13, f"{ARCHAN}/13/usernamemixed"), (V2005, f"{ARCHAN}/2005/usernamemixed"))

# Expected outcome per file (SOURCES.md: real ones yield https usernamemixed endpoints;
# broken ones yield none or the valid remainder).  The broken nosoapaction, nosoaptransport,
# nouri.ref, noaddress, nobinding.port and noname.binding files damage a windowstransport
# binding or add a stray one, so both usernamemixed endpoints survive; the damage itself is
# replayed on the usernamemixed binding in the mutation tests below.
EXPECTED: dict[str, tuple[tuple[WsTrustVersion, str], ...] | type[BridgeError]] = {
    "archan.us.mex.xml": ARCHAN_BOTH,
    "arupela.mex.xml": (
        (V13, "https://fs.arupela.com/adfs/services/trust/13/usernamemixed"),
        (V2005, "https://fs.arupela.com/adfs/services/trust/2005/usernamemixed"),
    ),
    "common.mex.xml": (
        (V13, "https://adfs.federatedtenant.com/adfs/services/trust/13/usernamemixed"),
        (V2005, "https://adfs.federatedtenant.com/adfs/services/trust/2005/usernamemixed"),
    ),
    "microsoft.mex.xml": (
        (V13, "https://corp.sts.microsoft.com/adfs/services/trust/13/usernamemixed"),
        (V2005, "https://corp.sts.microsoft.com/adfs/services/trust/2005/usernamemixed"),
    ),
    # 2005 only; its plain-http /2005/username port (message security) must not appear.
    "usystech.mex.xml": ((V2005, "https://sts.usystech.net/adfs/services/trust/2005/usernamemixed"),),
    # the 1.3 usernamemixed port is http here: only the 2005 one remains.
    "address.insecure.xml": ((V2005, f"{ARCHAN}/2005/usernamemixed"),),
    "noaddress.xml": ARCHAN_BOTH,
    "nobinding.port.xml": ARCHAN_BOTH,
    "noname.binding.xml": ARCHAN_BOTH,
    "nosoapaction.xml": ARCHAN_BOTH,
    "nosoaptransport.xml": ARCHAN_BOTH,
    "nouri.ref.xml": ARCHAN_BOTH,
    "syntax.notrelated.mex.xml": XmlRejected,
    "syntax.related.mex.xml": XmlRejected,
}


def mex_file(name: str) -> bytes:
    path = MEX_DIR / name
    if not path.is_file():
        pytest.skip(f"shared MEX vectors not found at {MEX_DIR} (../shared beside the checkout)")
    return path.read_bytes()


def found(raw: bytes) -> tuple[tuple[WsTrustVersion, str], ...]:
    return tuple((e.version, e.address) for e in parse_mex(raw))


def test_every_vector_has_an_expectation() -> None:
    if not MEX_DIR.is_dir():
        pytest.skip(f"shared MEX vectors not found at {MEX_DIR}")
    assert sorted(p.name for p in MEX_DIR.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector(name: str) -> None:
    raw = mex_file(name)
    expected = EXPECTED[name]
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_mex(raw)
        return
    endpoints = parse_mex(raw)
    assert tuple((e.version, e.address) for e in endpoints) == expected
    assert all(e.address.startswith("https://") for e in endpoints)
    assert all(e.address.endswith("/usernamemixed") for e in endpoints)


# --- the same damage, done to the usernamemixed 1.3 chain of a real document --------------

NS = {
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
    "wsp": "http://schemas.xmlsoap.org/ws/2004/09/policy",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "sp": "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702",
    "wsa10": "http://www.w3.org/2005/08/addressing",
    "mex": "http://schemas.xmlsoap.org/ws/2004/09/mex",
}
BINDING13 = "//wsdl:binding[@name='UserNameWSTrustBinding_IWSTrust13Async']"
PORT13 = "//wsdl:port[@name='UserNameWSTrustBinding_IWSTrust13Async']"
POLICY13 = "//wsp:Policy[@wsu:Id='UserNameWSTrustBinding_IWSTrust13Async_policy']"
ONLY_2005 = ((V2005, f"{ARCHAN}/2005/usernamemixed"),)


def first(root: etree._Element, path: str) -> etree._Element:
    hits = root.xpath(path, namespaces=NS)
    assert isinstance(hits, list) and hits, path
    element = hits[0]
    assert isinstance(element, etree._Element)
    return element


def drop(root: etree._Element, path: str) -> None:
    element = first(root, path)
    parent = element.getparent()
    assert parent is not None
    parent.remove(element)


def mutate(change: Callable[[etree._Element], object]) -> bytes:
    root = etree.fromstring(mex_file("archan.us.mex.xml"))
    change(root)
    return bytes(etree.tostring(root))


def set_address(address: str) -> Callable[[etree._Element], object]:
    def change(root: etree._Element) -> None:
        first(root, f"{PORT13}/soap12:address").set("location", address)
        first(root, f"{PORT13}/wsa10:EndpointReference/wsa10:Address").text = address

    return change


def drop_all_addresses(root: etree._Element) -> None:
    drop(root, f"{PORT13}/soap12:address")
    drop(root, f"{PORT13}/wsa10:EndpointReference")


def http_endpoint_reference(root: etree._Element) -> None:
    """soap12:address decides; the EndpointReference is only a fallback."""
    first(root, f"{PORT13}/wsa10:EndpointReference/wsa10:Address").text = "http://evil.example/13"


def duplicate_binding(root: etree._Element) -> None:
    binding = first(root, BINDING13)
    binding.addnext(etree.Element(f"{{{NS['wsdl']}}}binding", name=binding.get("name") or ""))


MUTATIONS: dict[str, tuple[Callable[[etree._Element], object], tuple[tuple[WsTrustVersion, str], ...]]] = {
    "no soapAction": (
        lambda r: first(r, f"{BINDING13}//soap12:operation").attrib.pop("soapAction"),
        ONLY_2005,
    ),
    "no transport": (lambda r: first(r, f"{BINDING13}/soap12:binding").attrib.pop("transport"), ONLY_2005),
    "other transport": (
        lambda r: first(r, f"{BINDING13}/soap12:binding").set("transport", "http://example.com/smtp"),
        ONLY_2005,
    ),
    "no PolicyReference URI": (
        lambda r: first(r, f"{BINDING13}/wsp:PolicyReference").attrib.pop("URI"),
        ONLY_2005,
    ),
    "PolicyReference to another policy": (
        lambda r: first(r, f"{BINDING13}/wsp:PolicyReference").set(
            "URI", "#CertificateWSTrustBinding_IWSTrust13Async_policy"
        ),
        ONLY_2005,
    ),
    "no binding name": (lambda r: first(r, BINDING13).attrib.pop("name"), ONLY_2005),
    "port without binding": (lambda r: first(r, PORT13).attrib.pop("binding"), ONLY_2005),
    "port binding prefix unknown": (
        lambda r: first(r, PORT13).set("binding", "nope:UserNameWSTrustBinding_IWSTrust13Async"),
        ONLY_2005,
    ),
    "port without any address": (drop_all_addresses, ONLY_2005),
    "http address": (set_address(f"http://{ARCHAN[8:]}/13/usernamemixed"), ONLY_2005),
    "address without host": (set_address("https:///adfs/services/trust/13/usernamemixed"), ONLY_2005),
    "relative address": (set_address("/adfs/services/trust/13/usernamemixed"), ONLY_2005),
    "upper-case https scheme": (
        set_address(f"HTTPS://{ARCHAN[8:]}/13/usernamemixed"),
        ((V13, f"HTTPS://{ARCHAN[8:]}/13/usernamemixed"), *ONLY_2005),
    ),
    "EndpointReference address only": (lambda r: drop(r, f"{PORT13}/soap12:address"), ARCHAN_BOTH),
    "soap12 https, EndpointReference http": (http_endpoint_reference, ARCHAN_BOTH),
    "soap12 http, EndpointReference https": (
        lambda r: first(r, f"{PORT13}/soap12:address").set("location", "http://evil.example/13"),
        ONLY_2005,
    ),
    "policy without WssUsernameToken10": (lambda r: drop(r, f"{POLICY13}//sp:WssUsernameToken10"), ONLY_2005),
    "policy without TransportBinding": (lambda r: drop(r, f"{POLICY13}//sp:TransportBinding"), ONLY_2005),
    "policy without Id": (lambda r: first(r, POLICY13).attrib.pop(f"{{{NS['wsu']}}}Id"), ONLY_2005),
    "duplicate binding name": (duplicate_binding, ONLY_2005),
    # the version is what the binding's action says, whatever the URL looks like
    "2005 action on the 1.3 binding": (
        lambda r: first(r, f"{BINDING13}//soap12:operation").set(
            "soapAction", "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue"
        ),
        (*ONLY_2005, (V2005, f"{ARCHAN}/13/usernamemixed")),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_broken_usernamemixed_chain(name: str) -> None:
    change, expected = MUTATIONS[name]
    assert found(mutate(change)) == expected


def test_unmodified_seed_of_the_mutations() -> None:
    assert found(mutate(lambda r: None)) == ARCHAN_BOTH


def test_wsdl_inside_a_mex_metadata_answer() -> None:
    wsdl = etree.fromstring(mex_file("common.mex.xml"))
    metadata = etree.Element(f"{{{NS['mex']}}}Metadata")
    section = etree.SubElement(metadata, f"{{{NS['mex']}}}MetadataSection", Dialect=NS["wsdl"])
    section.append(wsdl)
    endpoints = parse_mex(etree.tostring(metadata))
    assert [e.version for e in endpoints] == [V13, V2005]


@pytest.mark.parametrize(
    "raw",
    [b"<wsdl:definitions xmlns:wsdl='http://schemas.xmlsoap.org/wsdl/'/>", b"<html>login page</html>"],
)
def test_documents_without_endpoints_yield_none(raw: bytes) -> None:
    assert parse_mex(raw) == ()
    with pytest.raises(IdpProtocolError):
        pick_endpoint(parse_mex(raw))


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xfe", b"<!DOCTYPE x><x/>", b"<a>" + b"x" * (1024 * 1024) + b"</a>"]
)
def test_unreadable_documents_are_rejected(raw: bytes) -> None:
    with pytest.raises(XmlRejected):
        parse_mex(raw)


# --- pick_endpoint -------------------------------------------------------------------------

E13 = MexEndpoint(address="https://fs.example.com/adfs/services/trust/13/usernamemixed", version=V13)
E13B = MexEndpoint(address="https://fs2.example.com/adfs/services/trust/13/usernamemixed", version=V13)
E05 = MexEndpoint(address="https://fs.example.com/adfs/services/trust/2005/usernamemixed", version=V2005)


def test_pick_prefers_13_then_2005() -> None:
    assert pick_endpoint([E05, E13, E13B]) == E13
    assert pick_endpoint([E05]) == E05
    assert pick_endpoint((E13, E05), V13) == E13


def test_pick_honours_preference_and_falls_back() -> None:
    assert pick_endpoint([E13, E05], V2005) == E05
    assert pick_endpoint([E13], V2005) == E13
    assert pick_endpoint([E05], V13) == E05


def test_pick_from_nothing_is_a_protocol_error() -> None:
    with pytest.raises(IdpProtocolError, match="no https"):
        pick_endpoint([])


def test_pick_on_real_2005_only_farm() -> None:
    assert pick_endpoint(parse_mex(mex_file("usystech.mex.xml"))).version is V2005


# --- robustness -------------------------------------------------------------------------------


def only_bridge_errors(raw: bytes) -> None:
    try:
        endpoints = parse_mex(raw)
    except BridgeError:
        return
    assert isinstance(endpoints, tuple)
    assert all(isinstance(e, MexEndpoint) and e.address.lower().startswith("https://") for e in endpoints)


@given(st.binary(max_size=2048))
@settings(max_examples=200, deadline=None)
def test_random_bytes_only_raise_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)


SNIPPETS = [
    b"<",
    b">",
    b"&",
    b'"',
    b"'",
    b":",
    b"#",
    b"\x00",
    b"\xc3",
    b"http:",
    b"<!--",
    b"-->",
    b"tns:",
    b"/>",
]


@st.composite
def mutated_mex(draw: st.DrawFn) -> bytes:
    data = bytearray(FUZZ_SEED)
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "dup"]))
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1 if data else 0))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=60))]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(SNIPPETS))
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(min_value=1, max_value=300))]
    return bytes(data)


def _fuzz_seed() -> bytes:
    """A small real-shaped MEX: the usernamemixed chains of archan.us only (fast to mutate)."""
    path = MEX_DIR / "archan.us.mex.xml"
    if not path.is_file():
        return b"<wsdl:definitions xmlns:wsdl='http://schemas.xmlsoap.org/wsdl/'/>"
    root = etree.fromstring(path.read_bytes())
    keep = ("UserNameWSTrustBinding_IWSTrust13Async", "UserNameWSTrustBinding_IWSTrustFeb2005Async")
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        name = element.get("name") or element.get(f"{{{NS['wsu']}}}Id") or ""
        local = etree.QName(element).localname
        parent = element.getparent()
        if local in ("Policy", "binding", "port", "portType", "message", "types") and parent is not None:
            if parent is root or etree.QName(parent).localname == "service":
                if not any(name.startswith(k) for k in keep):
                    parent.remove(element)
    return bytes(etree.tostring(root))


FUZZ_SEED = _fuzz_seed()


def test_fuzz_seed_still_yields_both_endpoints() -> None:
    if not MEX_DIR.is_dir():
        pytest.skip(f"shared MEX vectors not found at {MEX_DIR}")
    assert found(FUZZ_SEED) == ARCHAN_BOTH
    assert len(FUZZ_SEED) < 12000


@given(mutated_mex())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_mex_only_raises_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)


ODD_VALUES = [
    "",
    " ",
    "#",
    ":",
    "tns:",
    "x:y:z",
    "http://a",
    "https://",
    "HTTPS://h/p",
    "\t#\n",
    "\u00e9:\u00e9",
]


@st.composite
def tree_mutated_mex(draw: st.DrawFn) -> bytes:
    """Well-formed variants of the seed: elements removed or copied, attributes given odd values."""
    root = etree.fromstring(FUZZ_SEED)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        elements = [el for el in root.iter() if isinstance(el.tag, str)]
        target = draw(st.sampled_from(elements))
        parent = target.getparent()
        op = draw(st.sampled_from(["remove", "copy", "attr", "text"]))
        if op == "remove" and parent is not None:
            parent.remove(target)
        elif op == "copy" and parent is not None:
            parent.append(copy.deepcopy(target))
        elif op == "attr" and target.attrib:
            name = draw(st.sampled_from(sorted(str(k) for k in target.attrib.keys())))
            target.set(name, draw(st.sampled_from(ODD_VALUES)))
        else:
            target.text = draw(st.sampled_from(ODD_VALUES))
    return bytes(etree.tostring(root))


@given(tree_mutated_mex())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tree_mutated_mex_only_raises_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)
