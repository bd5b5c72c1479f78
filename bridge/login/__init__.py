"""The login core: one attempt from a device to a session, and what guards it.

``service`` runs an attempt (tenant, user, IdP, session), ``guard`` wraps it in
throttles, audit and metrics, ``throttle`` and ``sessions`` hold their parts.
May import ``bridge.idp``, ``bridge.state``, ``bridge.xml`` and the ground modules; never a face.
"""
