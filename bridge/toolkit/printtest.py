"""``loginbridge print-test``: print one page through the Print-to-Web printer, as a print queue would.

Get-Printer-Attributes (without credentials, as driverless clients start),
Print-Job with the user's email and password (HTTP Basic, checked at the
tenant's IdP), then Get-Job-Attributes until the job reaches a final state.
The client is pyipp; its serializer knows only common attribute names and its
parser is lossy on collections, so only plain attributes are requested and
read here, from the raw answer (``IPP.raw``), which keeps ``status-message``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pyipp import IPP
from pyipp.enums import IppOperation, IppStatus
from pyipp.exceptions import IPPConnectionError, IPPConnectionUpgradeRequired, IPPResponseError
from pyipp.parser import parse as parse_ipp
from yarl import URL

from bridge.errors import RequestError
from bridge.toolkit.report import Report, Status, Step

log = logging.getLogger(__name__)

JOB_FINAL_STATES = {7: "canceled", 8: "aborted", 9: "completed"}
JOB_STATES = {3: "pending", 4: "pending-held", 5: "processing", 6: "processing-stopped", **JOB_FINAL_STATES}
PRINTER_STATES = {3: "idle", 4: "processing", 5: "stopped"}
PRINTER_ATTRIBUTES = ("printer-name", "printer-state", "printer-state-reasons", "printer-is-accepting-jobs",
                      "document-format-supported", "printer-make-and-model", "printer-location",
                      "uri-authentication-supported", "uri-security-supported")
FORMATS = {".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".pwg": "image/pwg-raster",
           ".urf": "image/urf", ".txt": "text/plain"}


@dataclass(frozen=True, kw_only=True, slots=True)
class PrintTestInput:
    url: str
    email: str
    password: str = field(repr=False)
    document: bytes | None = None  # None: a generated one-page PDF
    document_name: str = "loginbridge print-test"
    document_format: str = "application/pdf"
    wait_seconds: float = 60.0
    ca_file: Path | None = None  # the CA an ipps printer's certificate is verified against; None: the system's


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterAddress:
    host: str
    port: int
    path: str
    tls: bool


def parse_printer_url(url: str) -> PrinterAddress:
    """ipp://HOST[:PORT]/PATH or ipps://...; RequestError otherwise."""
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise RequestError(f"not a URL: {url!r}") from exc
    if parsed.scheme not in ("ipp", "ipps") or not parsed.host:
        raise RequestError(f"expected ipp://HOST:PORT/ipp/print or ipps://..., got {url!r}")
    if parsed.user or parsed.password:
        raise RequestError("put the email in --email and the password on stdin, not in the URL")
    port = parsed.explicit_port or 631
    return PrinterAddress(host=parsed.raw_host or parsed.host, port=port, path=parsed.path or "/ipp/print",
                          tls=parsed.scheme == "ipps")


def format_for(path: Path) -> str:
    return FORMATS.get(path.suffix.lower(), "application/octet-stream")


def one_page_pdf(text: str = "loginbridge print test") -> bytes:
    """A valid one-page A4 PDF 1.4 with one line of Helvetica; byte offsets in the xref are exact."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = f"BT /F1 20 Tf 72 760 Td ({safe}) Tj ET".encode("latin-1", "replace")
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n".encode() + b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def _status_name(code: int) -> str:
    try:
        return f"0x{code:04x} {IppStatus(code).name.lower().replace('_', '-')}"
    except ValueError:
        return f"0x{code:04x}"


def _first(group: Mapping[str, Any], name: str) -> Any:
    value = group.get(name)
    return value[0] if isinstance(value, list) and value else value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class _Queue:
    """pyipp with what a print queue needs: the raw answer, decoded leniently."""

    def __init__(self, address: PrinterAddress, email: str, password: str | None, limit_seconds: float,
                 ca_file: Path | None = None) -> None:
        # ipps: the certificate is verified (pyipp asks aiohttp for ssl=True per request, which takes the
        # connector's context), against ca_file when given (a private CA, the demo's), else the system's.
        self._session: aiohttp.ClientSession | None = None
        if address.tls and ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        self.ipp = IPP(host=address.host, port=address.port, base_path=address.path, tls=address.tls,
                       verify_ssl=address.tls, username=email if password is not None else None, password=password,
                       request_timeout=int(max(1, limit_seconds)), session=self._session)

    async def send(self, operation: IppOperation, message: dict[str, Any]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        raw = await self.ipp.raw(operation, message)
        elapsed = time.perf_counter() - started
        try:
            return parse_ipp(raw), elapsed
        except (struct.error, IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise _Unreadable(f"the printer's answer could not be read ({type(exc).__name__})") from exc

    async def close(self) -> None:
        await self.ipp.close()
        if self._session is not None:
            await self._session.close()


class _Unreadable(Exception):
    """pyipp could not decode the printer's answer."""


def _ipp_failure(name: str, parsed: dict[str, Any], elapsed: float, hint: str) -> Step:
    code = int(parsed.get("status-code", 0))
    message = _first(parsed.get("operation-attributes") or {}, "status-message")
    return Step(name=name, status=Status.FAIL, summary=f"IPP status {_status_name(code)}", hint=hint,
                seconds=elapsed, panel_message=str(message) if message else None)


def _per_uri(printer: Mapping[str, Any]) -> str:
    """uri-authentication-supported with its uri-security-supported, per printer URI (the three are parallel)."""
    auth = [str(a) for a in _as_list(printer.get("uri-authentication-supported"))]
    security = [str(x) for x in _as_list(printer.get("uri-security-supported"))]
    if len(security) != len(auth) or len(auth) < 2:
        return ", ".join(auth) or "?"
    return ", ".join(f"{a} over {'TLS' if x == 'tls' else 'plain HTTP' if x == 'none' else x}"
                     for a, x in zip(auth, security, strict=True))


def _transport_failure(name: str, exc: Exception, *, credentials: bool) -> Step:
    if isinstance(exc, IPPResponseError):
        status = exc.args[1].get("status-code") if len(exc.args) > 1 and isinstance(exc.args[1], dict) else None
        if status == 401:
            hint = ("the email or password was refused (the print queue would ask again): check them with "
                    "`loginbridge check TENANT --email ... --password-stdin`") if credentials else \
                "the printer wants credentials for this operation"
            return Step(name=name, status=Status.FAIL, summary="HTTP 401: authentication required or refused",
                        hint=hint, code="invalid_credentials" if credentials else None,
                        panel_message="Authentication required." if not credentials else
                        "Wrong email address or password.")
        return Step(name=name, status=Status.FAIL, summary=f"HTTP {status}", hint="is this the printer's URL?")
    if isinstance(exc, IPPConnectionUpgradeRequired):
        return Step(name=name, status=Status.FAIL, summary="the printer requires TLS", hint="use ipps://")
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError | aiohttp.ClientSSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        detail = getattr(cause, "verify_message", None) or getattr(getattr(cause, "certificate_error", None),
                                                                   "verify_message", None) or str(cause)
        return Step(name=name, status=Status.FAIL, summary=f"the printer's TLS certificate did not verify: {detail}",
                    hint="pass the CA that issued it with --ca-file (the demo's: state/idp-sim/ca.pem), or check "
                         "that printer.tls.cert names the host in the URL")
    return Step(name=name, status=Status.FAIL, summary=f"cannot reach the printer: {exc}",
                hint="check the URL, that the bridge's printer is enabled (printer.enabled) and its port is open")


async def run_print_test(inp: PrintTestInput) -> Report:
    started_at = datetime.now(UTC)
    address = parse_printer_url(inp.url)
    steps: list[Step] = []
    anonymous = _Queue(address, inp.email, None, inp.wait_seconds, inp.ca_file)
    user = _Queue(address, inp.email, inp.password, inp.wait_seconds, inp.ca_file)
    try:
        await _play(anonymous, user, inp, steps)
    except (IPPConnectionError, IPPResponseError, IPPConnectionUpgradeRequired) as exc:
        steps.append(_transport_failure(_next_name(steps), exc, credentials=len(steps) > 0))
    except _Unreadable as exc:
        steps.append(Step(name=_next_name(steps), status=Status.FAIL, summary=str(exc),
                          hint="the answer is not IPP the client understands: is this the printer's URL?"))
    finally:
        await anonymous.close()
        await user.close()
    return Report(tool="print-test", subject=inp.url, started_at=started_at, steps=tuple(steps))


_STEP_NAMES = ("get-printer-attributes", "print-job", "job state")


def _next_name(steps: list[Step]) -> str:
    return _STEP_NAMES[min(len(steps), len(_STEP_NAMES) - 1)]


async def _play(anonymous: _Queue, user: _Queue, inp: PrintTestInput, steps: list[Step]) -> None:
    parsed, elapsed = await anonymous.send(IppOperation.GET_PRINTER_ATTRIBUTES, {
        "operation-attributes-tag": {"requested-attributes": list(PRINTER_ATTRIBUTES)}})
    if parsed["status-code"] >= 0x200:
        steps.append(_ipp_failure("get-printer-attributes", parsed, elapsed, "the printer refused to describe itself"))
        return
    printer = parsed["printers"][0] if parsed.get("printers") else {}
    state = PRINTER_STATES.get(_first(printer, "printer-state") or 0, "unknown")
    accepting = bool(_first(printer, "printer-is-accepting-jobs"))
    formats = [str(f) for f in _as_list(printer.get("document-format-supported"))]
    summary = (f"'{_first(printer, 'printer-name')}' {state}, {'accepting' if accepting else 'NOT accepting'} jobs;"
               f" formats {', '.join(formats) or '?'}; authentication "
               f"{_per_uri(printer)}")
    status = Status.PASS
    hint = ""
    if not accepting or state == "stopped":
        status, hint = Status.FAIL, "the printer is not accepting jobs: check the bridge's log"
    elif formats and inp.document_format not in formats and "application/octet-stream" not in formats:
        status, hint = Status.FAIL, f"{inp.document_format} is not a supported document format"
    steps.append(Step(name="get-printer-attributes", status=status, summary=summary, hint=hint, seconds=elapsed))
    if status is Status.FAIL:
        return

    document = inp.document if inp.document is not None else one_page_pdf()
    parsed, elapsed = await user.send(IppOperation.PRINT_JOB, {
        "operation-attributes-tag": {"requesting-user-name": inp.email, "job-name": inp.document_name,
                                     "document-format": inp.document_format},
        "data": document})
    if parsed["status-code"] >= 0x200:
        steps.append(_ipp_failure("print-job", parsed, elapsed, "the print queue would show this as a job error"))
        return
    job = parsed["jobs"][0] if parsed.get("jobs") else {}
    job_id = _first(job, "job-id")
    if not isinstance(job_id, int):
        steps.append(Step(name="print-job", status=Status.FAIL, summary="accepted but no job-id returned",
                          seconds=elapsed, hint="a printer defect: report it"))
        return
    steps.append(Step(name="print-job", status=Status.PASS, seconds=elapsed,
                      summary=f"job {job_id} '{inp.document_name}' accepted ({len(document)} bytes, "
                              f"{inp.document_format}) for {inp.email}",
                      panel_message=f"Job {job_id}: {JOB_STATES.get(_first(job, 'job-state') or 0, 'pending')}"))
    await _follow(user, job_id, inp, steps)


async def _follow(user: _Queue, job_id: int, inp: PrintTestInput, steps: list[Step]) -> None:
    started = time.perf_counter()
    states: list[str] = []
    while True:
        parsed, _ = await user.send(IppOperation.GET_JOB_ATTRIBUTES, {
            "operation-attributes-tag": {"job-id": job_id, "requesting-user-name": inp.email,
                                         "requested-attributes": ["job-state", "job-state-reasons",
                                                                  "job-originating-user-name"]}})
        elapsed = time.perf_counter() - started
        if parsed["status-code"] >= 0x200:
            steps.append(_ipp_failure("job state", parsed, elapsed, "the printer lost or hid the job"))
            return
        job = parsed["jobs"][0] if parsed.get("jobs") else {}
        code = _first(job, "job-state") or 0
        name = JOB_STATES.get(code, f"state {code}")
        if not states or states[-1] != name:
            states.append(name)
        reasons = ", ".join(str(r) for r in _as_list(job.get("job-state-reasons")))
        owner = _first(job, "job-originating-user-name")
        if code in JOB_FINAL_STATES:
            ok = code == 9
            steps.append(Step(name="job state", status=Status.PASS if ok else Status.FAIL, seconds=elapsed,
                              summary=f"{' -> '.join(states)} ({reasons}); owner {owner}",
                              hint="" if ok else "the job did not complete: the bridge's log says why (delivery)",
                              panel_message=f"Job {job_id}: {name}"))
            return
        if elapsed > inp.wait_seconds:
            steps.append(Step(name="job state", status=Status.FAIL, seconds=elapsed,
                              summary=f"still {name} after {inp.wait_seconds:g} s ({reasons})",
                              hint="delivery is slow or failing: check printer.delivery and the bridge's log"))
            return
        await asyncio.sleep(0.25)
