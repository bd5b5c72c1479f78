"""How a typed email and a signed subject are compared: NFC, ASCII letter case, nothing else."""

from __future__ import annotations

import unicodedata

import pytest

from bridge.errors import EmailRequired
from bridge.login.service import identity_key, split_email

LONG_S = "\u017f"  # LATIN SMALL LETTER LONG S: casefold() and NFKC make it "s"
KELVIN = "\u212a"  # KELVIN SIGN: canonically equivalent to "K" (a singleton decomposition), so NFC makes it "K"
E_ACUTE_NFC = "\u00e9"
E_ACUTE_NFD = "e\u0301"


@pytest.mark.parametrize(
    ("typed", "signed"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "alice@example.com"),
        ("alice@example.com", "ALICE@EXAMPLE.COM"),
        (f"ren{E_ACUTE_NFC}@example.com", f"ren{E_ACUTE_NFD}@example.com"),
        (f"ren{E_ACUTE_NFD}@example.com", f"REN{E_ACUTE_NFC}@example.com"),
        (f"{KELVIN}ate@example.com", f"{KELVIN}ate@example.com"),  # the same character is the same
        # Canonically equivalent (Unicode's own singleton decomposition): the same text after NFC.
        ("kate@example.com", f"{KELVIN}ate@example.com"),
        ("Kate@example.com", f"{KELVIN}ate@example.com"),
    ],
)
def test_equal(typed: str, signed: str) -> None:
    assert identity_key(typed) == identity_key(signed)


@pytest.mark.parametrize(
    ("typed", "signed"),
    [
        ("sam@example.com", f"{LONG_S}am@example.com"),
        # Only ASCII letters fold: a non-ASCII capital is another string.
        (f"ren{E_ACUTE_NFC}@example.com", "REN\u00c9@example.com"),
        ("ohm@example.com", "\u2126hm@example.com"),  # OHM SIGN, canonically a Greek capital omega
        ("alice@example.com", "alice@example.com.evil"),
    ],
)
def test_different(typed: str, signed: str) -> None:
    assert identity_key(typed) != identity_key(signed)
    # What the comparison used to be (casefold) would have let the long-s pairs through:
    if signed[0] == LONG_S:
        assert typed.casefold() == signed.casefold()


def test_nfc_then_ascii_lower_and_nothing_more() -> None:
    assert identity_key(f"A{KELVIN}{E_ACUTE_NFD}@example.com") == f"ak{E_ACUTE_NFC}@example.com"
    assert identity_key(f"{LONG_S}am@example.com") == f"{LONG_S}am@example.com"  # no compatibility folding
    assert unicodedata.normalize("NFKC", LONG_S) == "s"  # what NFKC would have done


def test_split_email_lowers_ascii_only_and_composes() -> None:
    assert split_email("  Alice@Example.COM ") == ("alice@example.com", "example.com")
    assert split_email(f"REN{E_ACUTE_NFD}@Example.com") == (f"ren{E_ACUTE_NFC}@example.com", "example.com")
    assert split_email(f"{KELVIN}ate@example.com")[0] == "kate@example.com"
    assert split_email(f"{LONG_S}am@example.com")[0] == f"{LONG_S}am@example.com"
    assert split_email("\u00c9lodie@example.com")[0] == "\u00c9lodie@example.com"
    with pytest.raises(EmailRequired):
        split_email("alice")
