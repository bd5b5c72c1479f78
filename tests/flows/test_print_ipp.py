"""The printer over real HTTP on loopback: authentication, ownership, spool, delivery, restart."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.idpsim.state import FailMode
from printers.errors import IPP_DOCUMENT_FORMAT_ERROR
from printers.ipp import Attribute, GroupTag, ValueTag
from printers.jobs import JobState
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import (
    ALICE,
    FRONTDESK,
    PrintBridgeFactory,
    ipp_post,
    ipp_request,
    job_value,
    make_print_bridge,
    minimal_pdf,
)

__all__ = ["make_print_bridge"]

PDF = minimal_pdf(2)


def print_job(data: bytes = PDF, fmt: str = "application/pdf", **kw: object) -> bytes:
    return ipp_request(Op.PRINT_JOB, Attribute.of("requesting-user-name", ValueTag.NAME, "someone-else"),
                       Attribute.of("job-name", ValueTag.NAME, "report"),
                       Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, fmt), data=data, **kw)  # type: ignore[arg-type]


def job_op(op: int, job_id: int, *extra: Attribute) -> bytes:
    return ipp_request(op, Attribute.of("job-id", ValueTag.INTEGER, job_id), *extra)


async def test_print_job_is_delivered_as_the_authenticated_user(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    status, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert status == 200 and reply is not None and reply.code == IppStatus.OK, reply
    assert reply.version == (2, 0) and reply.request_id == 7
    job_id = job_value(reply, "job-id")
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]  # never requesting-user-name
    assert manifest["tenant"] == "example" and manifest["job_name"] == "report"
    assert bridge.delivered_bytes(manifest) == PDF
    status, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, int(job_id)), auth=ALICE)  # type: ignore[call-overload]
    assert reply is not None
    assert job_value(reply, "job-originating-user-name") == ALICE[0]
    assert job_value(reply, "job-state") == JobState.COMPLETED
    assert job_value(reply, "job-state-reasons") == "job-completed-successfully"
    assert job_value(reply, "document-format-detected") == "application/pdf"
    assert bridge.trust_calls() == 1  # two requests, one IdP round trip (verification cache)
    assert list(bridge.config.printer.spool_dir.iterdir()) == []  # type: ignore[union-attr]


async def test_requests_echo_the_version(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    for version in ((1, 0), (1, 1), (2, 0)):
        _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES, version=version))
        assert reply is not None and reply.version == version and reply.code == IppStatus.OK
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES, version=(3, 0)))
    assert reply is not None and reply.code == IppStatus.ERROR_VERSION_NOT_SUPPORTED and reply.version == (3, 0)


async def test_printer_attributes_are_public_and_filtered(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    wanted = Attribute.of("requested-attributes", ValueTag.KEYWORD, "printer-uuid", "job-template")
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES, wanted))
    assert reply is not None and reply.code == IppStatus.OK
    (group,) = reply.groups_of(GroupTag.PRINTER)
    names = set(group.names())
    assert "printer-uuid" in names and "copies-supported" in names and "media-col-database" in names
    assert "printer-name" not in names
    uuid_before = group.get("printer-uuid").first  # type: ignore[union-attr]
    await bridge.stop()
    bridge = await make_print_bridge()  # restart on the same state directory
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES, wanted))
    assert reply is not None and reply.find(GroupTag.PRINTER, "printer-uuid").first == uuid_before  # type: ignore[union-attr]
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES))
    assert reply is not None
    auth = reply.find(GroupTag.PRINTER, "uri-authentication-supported")
    assert auth is not None and auth.plain_values == ("basic",)


async def test_no_or_wrong_credentials_get_401_with_a_basic_challenge(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    status, _ = await ipp_post(bridge, print_job())
    assert status == 401
    status, _ = await ipp_post(bridge, print_job(), auth=(ALICE[0], "wrong-pass-1"))
    assert status == 401
    status, _ = await ipp_post(bridge, print_job(), auth=("alice", "alice-demo-pass"))  # not an email
    assert status == 401
    status, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert status == 200 and reply is not None and reply.code == IppStatus.OK
    assert bridge.manifests() == [] or all(m["user_email"] == ALICE[0] for m in bridge.manifests())


async def test_401_comes_before_100_continue(make_print_bridge: PrintBridgeFactory) -> None:
    """The client waits for 100 Continue before sending the document; without credentials it never comes."""
    bridge = await make_print_bridge()
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    head = (f"POST /ipp/print HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\nContent-Type: application/ipp\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    writer.write(head.encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # no body sent: the answer comes anyway
    assert response.startswith(b"HTTP/1.1 401"), response
    assert b'WWW-Authenticate: Basic realm="loginbridge", charset="UTF-8"' in response
    assert b"Connection: close" in response
    writer.close()

    # With good credentials the same request gets 100 Continue, then the answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    KNOWN_SECRETS.add(ALICE[1])
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    body = print_job()
    writer.write(head.replace("Expect:", f"Authorization: Basic {token}\r\nExpect:").encode())
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 100")
    await reader.readline()
    writer.write(b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
    writer.close()
    await bridge.wait_delivered(1)


async def test_idp_outage_is_an_ipp_status_not_a_401(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    bridge.sim.state.fail_mode = FailMode.HTTP_503
    status, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert status == 200 and reply is not None
    assert reply.code == IppStatus.ERROR_SERVICE_UNAVAILABLE
    bridge.sim.state.fail_mode = None
    status, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK  # the failure was not cached


async def test_cache_is_dropped_after_a_failure(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    get_jobs = ipp_request(Op.GET_JOBS)
    for _ in range(3):
        assert (await ipp_post(bridge, get_jobs, auth=ALICE))[0] == 200
    assert bridge.trust_calls() == 1
    assert (await ipp_post(bridge, get_jobs, auth=(ALICE[0], "not-her-password")))[0] == 401
    assert (await ipp_post(bridge, get_jobs, auth=ALICE))[0] == 200
    assert bridge.trust_calls() == 3  # the wrong password, then alice verified again
    await bridge.store.disable_user("example", ALICE[0])
    assert (await ipp_post(bridge, get_jobs, auth=ALICE))[0] == 401  # a cache hit still checks the user


async def test_users_never_see_or_cancel_each_others_jobs(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge(printer={"delivery": {"url": "https://127.0.0.1:9/never", "max_attempts": 5,
                                                           "backoff_seconds": 60}})
    _, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert reply is not None
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    for op in (Op.GET_JOB_ATTRIBUTES, Op.CANCEL_JOB):
        _, reply = await ipp_post(bridge, job_op(op, job_id), auth=FRONTDESK)
        assert reply is not None and reply.code == IppStatus.ERROR_NOT_AUTHORIZED, op
    all_jobs = ipp_request(Op.GET_JOBS, Attribute.of("which-jobs", ValueTag.KEYWORD, "all"))
    _, reply = await ipp_post(bridge, all_jobs, auth=FRONTDESK)
    assert reply is not None and reply.code == IppStatus.OK and not reply.groups_of(GroupTag.JOB)
    _, reply = await ipp_post(bridge, all_jobs, auth=ALICE)
    assert reply is not None and [g.get("job-id").first for g in reply.groups_of(GroupTag.JOB)] == [job_id]  # type: ignore[union-attr]
    _, reply = await ipp_post(bridge, ipp_request(Op.CANCEL_MY_JOBS), auth=FRONTDESK)
    assert reply is not None and reply.code == IppStatus.OK
    _, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, job_id), auth=ALICE)
    assert reply is not None and job_value(reply, "job-state") in (JobState.PENDING, JobState.PROCESSING)
    await asyncio.sleep(0.2)  # let the first (failing) attempt finish
    _, reply = await ipp_post(bridge, job_op(Op.CANCEL_JOB, job_id), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    _, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, job_id), auth=ALICE)
    assert reply is not None and job_value(reply, "job-state") == JobState.CANCELED


async def test_formats_are_checked_against_the_bytes(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    spool = bridge.config.printer.spool_dir  # type: ignore[union-attr]
    _, reply = await ipp_post(bridge, print_job(fmt="application/postscript"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED
    _, reply = await ipp_post(bridge, print_job(data=b"%!PS-Adobe-3.0\n" * 100), auth=ALICE)
    assert reply is not None and reply.code == IPP_DOCUMENT_FORMAT_ERROR == 0x0411  # RFC 8011 Appendix B
    _, reply = await ipp_post(bridge, print_job(data=b"plain text\n", fmt="application/octet-stream"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED
    _, reply = await ipp_post(bridge, print_job(fmt="application/octet-stream"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    assert reply.code == IppStatus.OK
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["document_format"] == "application/pdf"
    assert [p for p in spool.iterdir() if p.name.startswith(".part-")] == []


async def test_size_cap_refuses_and_deletes_the_partial_file(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge(printer={"max_job_mb": 1})
    big = PDF + os.urandom(1024 * 1024)
    status, reply = await ipp_post(bridge, print_job(data=big), auth=ALICE)
    assert status == 200 and reply is not None and reply.code == IppStatus.ERROR_REQUEST_ENTITY
    assert list(bridge.config.printer.spool_dir.iterdir()) == []  # type: ignore[union-attr]
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_JOBS, Attribute.of("which-jobs", ValueTag.KEYWORD, "all")),
                              auth=ALICE)
    assert reply is not None and not reply.groups_of(GroupTag.JOB)


async def test_create_job_send_document_close(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    media = Attribute.of("media", ValueTag.KEYWORD, "na_letter_8.5x11in")
    _, reply = await ipp_post(bridge, ipp_request(Op.CREATE_JOB, job=(media,)), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    assert job_value(reply, "job-state-reasons") == "job-incoming"
    no_last = job_op(Op.SEND_DOCUMENT, job_id)
    _, reply = await ipp_post(bridge, no_last, auth=ALICE)
    assert reply is not None and reply.code == IppStatus.ERROR_BAD_REQUEST
    send = ipp_request(Op.SEND_DOCUMENT, Attribute.of("job-id", ValueTag.INTEGER, job_id),
                       Attribute.of("last-document", ValueTag.BOOLEAN, False), data=PDF)
    _, reply = await ipp_post(bridge, send, auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    await asyncio.sleep(0.1)
    assert bridge.manifests() == []  # not closed yet
    _, reply = await ipp_post(bridge, job_op(Op.CLOSE_JOB, job_id), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["job_attributes"] == {"media": "na_letter_8.5x11in"}
    assert bridge.delivered_bytes(manifest) == PDF


async def test_unsupported_job_attributes(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    sides = Attribute.of("sides", ValueTag.KEYWORD, "two-sided-long-edge")
    fidelity = Attribute.of("ipp-attribute-fidelity", ValueTag.BOOLEAN, True)
    _, reply = await ipp_post(bridge, ipp_request(Op.VALIDATE_JOB, fidelity, job=(sides,)), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.ERROR_ATTRIBUTES_OR_VALUES
    assert reply.find(GroupTag.UNSUPPORTED, "sides") is not None
    _, reply = await ipp_post(bridge, ipp_request(Op.VALIDATE_JOB, job=(sides,)), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK_IGNORED_OR_SUBSTITUTED


async def test_accepted_jobs_survive_a_restart_and_delivery_resumes(
    make_print_bridge: PrintBridgeFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the outbox directory should be: every delivery fails")
    bridge = await make_print_bridge(printer={"delivery": {"outbox_dir": str(blocker), "max_attempts": 50,
                                                           "backoff_seconds": 0.05}})
    _, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    await asyncio.sleep(0.3)
    _, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, job_id), auth=ALICE)
    assert reply is not None and job_value(reply, "job-state") in (JobState.PENDING, JobState.PROCESSING)
    await bridge.stop()
    blocker.unlink()
    bridge = await make_print_bridge()  # same state directory, outbox now usable
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["job_id"] == job_id and bridge.delivered_bytes(manifest) == PDF
    # The outbox file is written before the job's state is stored as completed: poll that moment away.
    for _ in range(100):
        _, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, job_id), auth=ALICE)
        assert reply is not None
        if job_value(reply, "job-state") != JobState.PROCESSING:
            break
        await asyncio.sleep(0.02)
    assert job_value(reply, "job-state") == JobState.COMPLETED


async def test_delivery_gives_up_after_max_attempts(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    bridge = await make_print_bridge(printer={"delivery": {"outbox_dir": str(blocker), "max_attempts": 3,
                                                           "backoff_seconds": 0.02}})
    _, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert reply is not None
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    for _ in range(100):
        _, reply = await ipp_post(bridge, job_op(Op.GET_JOB_ATTRIBUTES, job_id), auth=ALICE)
        assert reply is not None
        if job_value(reply, "job-state") == JobState.ABORTED:
            break
        await asyncio.sleep(0.05)
    assert job_value(reply, "job-state") == JobState.ABORTED
    assert job_value(reply, "job-state-reasons") == "aborted-by-system"
    assert "3 times" in str(job_value(reply, "job-state-message"))


async def test_credentials_with_characters_no_text_can_carry_are_refused_before_the_idp(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """A NUL or control character in a Basic password never reaches an envelope: a clear answer, no IdP call."""
    bridge = await make_print_bridge()
    for password in ("alice\x00demo", "alice\x1bdemo"):
        status, reply = await ipp_post(bridge, print_job(), auth=(ALICE[0], password))
        assert status < 500, status
        assert reply is None or reply.code != IppStatus.OK, reply
    assert bridge.trust_calls() == 0
    events = await bridge.store.audit_events(last=2)
    assert [(e.result, e.mode, e.email) for e in events] == [("invalid_request", "printer", ALICE[0])] * 2
