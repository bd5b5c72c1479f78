"""The list of tests that run alone (tests/conftest.py) names files that exist: a rename must not drop one."""

from __future__ import annotations

from tests.conftest import HERE, SERIAL_FILES


def test_every_serial_file_exists() -> None:
    assert sorted(f for f in SERIAL_FILES if not (HERE / f).is_file()) == []
