"""The throwaway slapd itself: TLS from its test CA, the generated directory, paging, always stopped."""

from __future__ import annotations

import os
import socket
import ssl

import ldap3
import pytest

from bridge.localservers.slapd import SlapdServer, run_slapd
from tests.servers.slapd import DIRECTORY, PEOPLE, SERVICE_DN, SERVICE_PASSWORD


def test_ldaps_presents_a_certificate_of_the_test_ca_for_loopback(slapd_server: SlapdServer) -> None:
    context = ssl.create_default_context(cafile=str(slapd_server.ca.ca_file))
    with socket.create_connection(("127.0.0.1", slapd_server.ldaps_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", slapd_server.ldaps_port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")  # not a public CA


def test_the_directory_is_loaded_and_only_paged_searches_see_all_of_it(slapd_server: SlapdServer) -> None:
    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=slapd_server.ldap_port), SERVICE_DN, SERVICE_PASSWORD,
                            auto_bind=True)
    conn.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["uid"])
    assert conn.result["description"] == "sizeLimitExceeded"  # a plain search stops at the limit of 100
    entries = list(conn.extend.standard.paged_search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["uid"],
                                                     paged_size=90, generator=True))
    assert len([e for e in entries if e["type"] == "searchResEntry"]) == DIRECTORY.entries
    conn.search(PEOPLE, f"(memberOf={DIRECTORY.group_dn})", attributes=["uid"])  # the memberof overlay
    assert len(conn.response) == DIRECTORY.group_members
    conn.search(PEOPLE, "(userAccountControl=514)", attributes=["uid"])
    assert len(conn.response) == DIRECTORY.disabled
    conn.unbind()
    assert "employeeType: disabled" in slapd_server.search(f"(uid={DIRECTORY.uid(0)})", "employeeType")


def test_it_is_stopped_and_removed_on_the_way_out() -> None:
    with run_slapd() as server:
        pid = server.process.pid
        base = server.base_dir
    assert server.process.poll() is not None and not base.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
