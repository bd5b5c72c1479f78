"""Console passwords: scrypt hashes in the configuration, checked in constant time.

The same salted scrypt encoding as platform passwords (``bridge.passwords``), so
one format is documented and reviewed.  An unknown user name still costs one
scrypt run, so response times do not tell which names exist.
"""

from __future__ import annotations

from bridge.config import ConsoleConfig, ConsoleUser
from bridge.passwords import hash_password, verify_password

_DUMMY_HASH = hash_password("loginbridge console: no such user")


def hash_console_password(password: str) -> str:
    """The ``password_hash`` value for conf/bridge.yaml."""
    return hash_password(password)


def check_console_login(console: ConsoleConfig | None, name: str, password: str) -> ConsoleUser | None:
    """The console user with this name and password, or None."""
    users = console.users if console is not None else ()
    user = next((u for u in users if u.name == name), None)
    if user is None:
        verify_password(password, _DUMMY_HASH)
        return None
    return user if verify_password(password, user.password_hash) else None
