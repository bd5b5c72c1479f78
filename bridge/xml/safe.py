"""Parsing untrusted XML: no DOCTYPE, no entities, no network, bounded size.

Every XML document that comes from outside (IdP answers, metadata, MEX) goes
through :func:`parse_untrusted`, which either returns the root element or
raises :class:`~bridge.errors.XmlRejected`.  The bytes given are kept by the
caller untouched, so a signature can later be checked on exactly them.
"""

from __future__ import annotations

import threading

from lxml import etree

from bridge.errors import XmlRejected

DEFAULT_MAX_BYTES = 256 * 1024


_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser: made once, since building one costs as much as parsing a token.

    lxml parsers may be reused for successive documents (each ``fromstring``
    starts afresh) but not shared between threads, hence one per thread.
    """
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        strip_cdata=False,
    )


def parse_untrusted(raw: bytes, *, what: str = "XML document", max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse ``raw`` and return its root element, refusing anything unsafe."""
    if not isinstance(raw, bytes | bytearray):
        raise XmlRejected(f"{what}: expected bytes")
    if len(raw) > max_bytes:
        raise XmlRejected(f"{what}: {len(raw)} bytes is over the {max_bytes}-byte limit")
    if not raw.strip():
        raise XmlRejected(f"{what}: empty")
    # Cheap early refusal; the docinfo check below is the authoritative one.
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise XmlRejected(f"{what}: a DOCTYPE is not allowed")
    try:
        root = etree.fromstring(bytes(raw), parser=_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise XmlRejected(f"{what}: not well-formed XML ({exc})") from exc
    docinfo = root.getroottree().docinfo
    # lxml-stubs lacks DocInfo.doctype; getattr keeps the check typed loosely.
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected(f"{what}: a DOCTYPE is not allowed")
    return root


def full_text(element: etree._Element | None) -> str:
    """The whole string value of an element, across comments and children.

    ``element.text`` stops at the first comment, which is how comment
    injection (CVE-2017-11427) reads ``alice@example.org<!---->.evil.com``
    as ``alice@example.org``.  This reads every text node.
    """
    if element is None:
        return ""
    parts: list[str] = []
    for node in element.iter():
        if node is not element and not isinstance(node.tag, str):
            # comment or processing instruction: skip its own text, keep its tail
            if node.tail:
                parts.append(node.tail)
            continue
        if node.text:
            parts.append(node.text)
        if node is not element and node.tail:
            parts.append(node.tail)
    return "".join(parts)
