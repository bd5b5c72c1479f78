"""The printer's identity that must survive restarts: printer-uuid (PWG 5100.14 section 5.2).

Clients (macOS, iOS, CUPS) key a printer by its UUID; a new one after a restart, or a
different one from each instance behind the load balancer, would show up as another
printer.  It lives in the store (table ``printer_identity``): the first instance to start
writes it, every other one reads it.  A ``printer-uuid`` file left in the state directory by
a release that kept it there is the value written, so an upgraded printer stays the same
printer.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from bridge.errors import StoreError
from bridge.state.db import Database

UUID_FILENAME = "printer-uuid"
_NAME = "printer-uuid"


def _from_file(state_dir: Path) -> str | None:
    path = state_dir / UUID_FILENAME
    try:
        return str(uuid.UUID(path.read_text(encoding="ascii").strip()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} does not hold a UUID; remove it to make a new one") from exc


async def load_printer_uuid(db: Database, state_dir: Path) -> str:
    """The printer's UUID: the stored one, or (first start) the old file's or a new one, stored."""
    found = await db.fetchval("SELECT value FROM printer_identity WHERE name = ?", (_NAME,))
    if found is not None:
        return str(found)
    candidate = _from_file(state_dir) or str(uuid.uuid4())
    await db.execute("INSERT INTO printer_identity (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                     (_NAME, candidate))
    return str(await db.fetchval("SELECT value FROM printer_identity WHERE name = ?", (_NAME,)))
