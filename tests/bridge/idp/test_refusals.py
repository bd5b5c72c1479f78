"""bridge.idp.refusals: the wording real IdPs use, read into classes; the shape of an answer for the log."""

from __future__ import annotations

import pytest

from bridge.idp.refusals import Refusal, error_for_status, first_element_name, refusal_from_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # credentials
        ("ID3242: The security token could not be authenticated or authorized.", Refusal.CREDENTIALS),
        ("At least one security token in the message could not be validated.", Refusal.CREDENTIALS),
        ("SimpleSAML\\Error\\Error: WRONGUSERPASS", Refusal.CREDENTIALS),
        ("Invalid username or password.", Refusal.CREDENTIALS),
        ("invalid_user_credentials", Refusal.CREDENTIALS),
        ("UnknownUsername", Refusal.CREDENTIALS),
        # the account
        ("MSIS7068: Access denied.", Refusal.ACCOUNT),
        ("AccountLocked", Refusal.ACCOUNT),
        ("Your account is temporarily disabled", Refusal.ACCOUNT),
        ("user_temporarily_disabled", Refusal.ACCOUNT),
        ("The password has expired", Refusal.ACCOUNT),
        ("Authentication failed: account locked", Refusal.ACCOUNT),  # more specific than "authentication failed"
        # the IdP does not know us
        ("MSIS7007: The requested relying party trust 'urn:x' is unspecified or unsupported.", Refusal.SP_NOT_REGISTERED),
        ("ID3082: The request scope is not valid or is unsupported.", Refusal.SP_NOT_REGISTERED),
        ("Unable to locate metadata for 'urn:loginbridge:example.org'", Refusal.SP_NOT_REGISTERED),
        ("Unknown login requester.", Refusal.SP_NOT_REGISTERED),
        ("unknown service provider", Refusal.SP_NOT_REGISTERED),
        # our configuration
        ("Client is not allowed to use ECP profile.", Refusal.CONFIGURATION),
        ("Wrong client protocol.", Refusal.CONFIGURATION),
        ("An error occurred when verifying security for the message.", Refusal.CONFIGURATION),
        # nothing said
        ("MSIS3127: The specified request failed.", None),
        ("Some error occurred while processing the AuthnRequest.", None),
        ("", None),
        ("The user could not be served right now.", None),
    ],
)
def test_wording(text: str, expected: Refusal | None) -> None:
    assert refusal_from_text(text) is expected


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b'<?xml version="1.0"?>\n<!-- a comment --><s:Envelope xmlns:s="urn:x"/>', "s:Envelope"),
        (b"<!DOCTYPE html>\n<html><body>x</body></html>", "html"),
        (b'{"error": "unknown_error"}', "(none)"),
        (b"", "(none)"),
        (b"\x89GARBAGE\x00<soap11:Envelope\xff\xfe", "soap11:Envelope"),
        (b"<" + b"a" * 500, "a" * 64),  # bounded
    ],
)
def test_first_element_name(body: bytes, name: str) -> None:
    assert first_element_name(body) == name


def test_an_unknown_sp_page_wins_over_its_status() -> None:
    error = error_for_status(403, b"<p>Unable to locate metadata for urn:x</p>", "text/html", what="the IdP")
    assert error.code == "sp_not_registered"
    assert "HTTP 403" in error.detail and "Unable to locate metadata" in error.detail
    # Only error statuses are read for it.
    assert error_for_status(204, b"unknown requester", "text/plain", what="the IdP").code == "idp_protocol_error"
