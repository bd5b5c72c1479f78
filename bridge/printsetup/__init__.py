"""``/print/setup``: a user signs in once and gets a personal printer URL that never asks for a password.

The page lives on the bridge's API listener (its ``public_url``); the URL it hands
out points at the printer listener (``printer.tls`` set: ``ipps://``). The token
in it is created by :mod:`bridge.state.printlinks` and shown this once.
"""

from __future__ import annotations

from bridge.printsetup.pages import mount_print_setup

__all__ = ["mount_print_setup"]
