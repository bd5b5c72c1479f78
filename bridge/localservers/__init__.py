"""Throwaway local servers (PostgreSQL, HAProxy, OpenLDAP slapd) on loopback, for ``loginbridge cluster-demo``
and the tests.

Each starter runs a real server from the system's packages in a temp dir and removes it on the way
out. Used only by the composition root (the cluster demo) and the tests (an import contract).
"""
