"""The printer's identity that must survive restarts: printer-uuid (PWG 5100.14 section 5.2).

Clients (macOS, iOS, CUPS) key a printer by its UUID; a new one after a
restart would show up as a new printer.  It is kept in a small file in the
state directory.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from bridge.errors import StoreError

UUID_FILENAME = "printer-uuid"


def load_printer_uuid(state_dir: Path) -> str:
    """The saved UUID, or a new one saved durably."""
    path = state_dir / UUID_FILENAME
    try:
        return str(uuid.UUID(path.read_text(encoding="ascii").strip()))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} does not hold a UUID; remove it to make a new one") from exc
    value = str(uuid.uuid4())
    tmp = path.with_name(f".{UUID_FILENAME}.tmp")
    try:
        tmp.write_text(value + "\n", encoding="ascii")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot save {path}: {exc.strerror}") from exc
    return value
