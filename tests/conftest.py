"""Which tests run alone.

`make test` runs the suite on two pytest-xdist workers, then the files below in one process:
they assert how long things take (listener deadlines, an IdP or database timeout honoured
within a bound, the event loop never stalling past 0.25 s under a flood), and a second
worker competing for the same two cores would stretch what they measure, not what the
bridge does.  Everything else only waits for events, so it shares the machine safely.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERIAL_FILES = frozenset({
    "flows/test_print_hostile.py",
    "flows/test_requests.py",
    "flows/test_idp_faults.py",
    "flows/test_store_postgres.py",
    "flows/test_print_compressed.py",
    "bridge/test_listeners.py",
    "bridge/idp/test_http.py",
    "bridge/idp/test_lookup.py",
    "bridge/state/test_db.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = item.path.resolve().relative_to(HERE).as_posix()
        except ValueError:
            continue
        if relative in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)
