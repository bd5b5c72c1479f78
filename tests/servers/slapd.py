"""The throwaway OpenLDAP slapd as pytest fixtures; the server itself is :mod:`bridge.localservers.slapd`.

Fixtures (import them into a conftest, as ``tests/directory/conftest.py`` does):

- ``slapd_server`` (function): a fresh slapd with :data:`DIRECTORY` loaded (``ldapadd``), so a test may
  change entries freely; stopped at teardown.

:class:`GeneratedDirectory` describes the generated directory (an AD-like company of a few hundred users,
some disabled, some refusable), so tests can name what a sync must find. The starter's names are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge.localservers.slapd import (
    AD_TEST_SCHEMA,
    ROOT_DN,
    SUFFIX,
    SlapdError,
    SlapdServer,
    TlsFiles,
    find_binary,
    free_port,
    make_test_ca,
    render_config,
    run_slapd,
)

__all__ = [
    "AD_TEST_SCHEMA", "DIRECTORY", "GROUPS", "PEOPLE", "ROOT_DN", "SERVICE_DN", "SERVICE_PASSWORD", "SUFFIX",
    "GeneratedDirectory", "SlapdError", "SlapdServer", "TlsFiles", "find_binary", "free_port", "make_test_ca",
    "person", "render_config", "run_slapd", "slapd_server",
]

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=loginbridge-sync,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "directory-sync-test-password-7f3a"
NORMAL_ACCOUNT, DISABLED_ACCOUNT = 512, 514  # AD's userAccountControl: NORMAL_ACCOUNT, + ACCOUNTDISABLE (2)


@dataclass(frozen=True)
class GeneratedDirectory:
    """``users`` people u000..: u000@example.com, user name u000, display name "User 000"; every
    ``disabled_every``-th one (u000, u025 ...) disabled both ways (userAccountControl 514 and
    employeeType: disabled); u000..u{group_members-1} in the group cn=fax-users. Besides them, under
    ou=people: ``outside`` users of other.org, one with only a userPrincipalName (upn-only@example.com),
    one with no address at all (no-mail), two entries sharing shared@example.com. The sync's service
    account is outside ou=people."""

    users: int = 300
    disabled_every: int = 25
    outside: int = 2
    group_members: int = 40
    group_dn: str = f"cn=fax-users,{GROUPS}"

    def uid(self, n: int) -> str:
        return f"u{n:03d}"

    def dn(self, n: int) -> str:
        return f"uid={self.uid(n)},{PEOPLE}"

    def is_disabled(self, n: int) -> bool:
        return n % self.disabled_every == 0

    @property
    def disabled(self) -> int:
        return sum(1 for n in range(self.users) if self.is_disabled(n))

    @property
    def entries(self) -> int:
        """Entries under ou=people matching (objectClass=inetOrgPerson)."""
        return self.users + self.outside + 1 + 1 + 2

    @property
    def creatable(self) -> int:
        """Accounts a first sync creates: the enabled users and upn-only."""
        return self.users - self.disabled + 1

    def ldif(self) -> str:
        records = [
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: loginbridge-sync\nuserPassword: {SERVICE_PASSWORD}\n",
        ]
        for n in range(self.users):
            records.append(person(self.uid(n), mail=f"{self.uid(n)}@example.com", display_name=f"User {n:03d}",
                                  disabled=self.is_disabled(n)))
        for n in range(self.outside):
            records.append(person(f"ext{n}", mail=f"ext{n}@other.org", display_name=f"External {n}"))
        records.append(person("upn-only", mail=None, upn="upn-only@example.com", display_name="UPN Only"))
        records.append(person("no-mail", mail=None, display_name="No Mail"))
        records.append(person("dup-a", mail="shared@example.com", display_name="Shared A"))
        records.append(person("dup-b", mail="Shared@Example.com", display_name="Shared B"))
        members = "".join(f"member: {self.dn(n)}\n" for n in range(self.group_members))
        records.append(f"dn: {self.group_dn}\nobjectClass: groupOfNames\ncn: fax-users\n{members}")
        return "\n".join(records)


def person(uid: str, *, mail: str | None, display_name: str, disabled: bool = False, upn: str | None = None) -> str:
    """One inetOrgPerson + lbTestADAccount entry under ou=people, as LDIF."""
    lines = [f"dn: uid={uid},{PEOPLE}", "objectClass: inetOrgPerson", "objectClass: lbTestADAccount",
             f"uid: {uid}", f"cn: {display_name}", f"sn: {display_name.split()[-1]}",
             f"displayName: {display_name}", f"sAMAccountName: {uid}",
             f"userAccountControl: {DISABLED_ACCOUNT if disabled else NORMAL_ACCOUNT}"]
    if mail is not None:
        lines.append(f"mail: {mail}")
    if upn is not None:
        lines.append(f"userPrincipalName: {upn}")
    if disabled:
        lines.append("employeeType: disabled")
    return "\n".join(lines) + "\n"


DIRECTORY = GeneratedDirectory()


@pytest.fixture
def slapd_server() -> Iterator[SlapdServer]:
    """A fresh slapd (LDAPS and LDAP+StartTLS on loopback, a test CA) holding :data:`DIRECTORY`."""
    with run_slapd() as server:
        server.add(DIRECTORY.ldif())
        yield server
