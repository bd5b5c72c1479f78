"""What the bridge remembers: the store (users, devices, sessions, audit rows) and the audit trail.

May import ``bridge.xml`` and the ground modules only; never ``bridge.idp`` or the login core.
"""
