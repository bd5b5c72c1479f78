"""Steps and reports: what every technician tool prints, as text or JSON.

A step is one link that can be checked on its own (a DNS lookup, a TLS
handshake, a login).  Its status says whether it holds; its hint says what
to change when it does not, in one line a technician can act on.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.errorcatalog import ADMIN_DETAIL
from bridge.errors import BridgeError


class Status(enum.Enum):
    PASS = "PASS"  # noqa: S105 (a status word)
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not run because an earlier step failed or it does not apply


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One checked link: its verdict, what was seen, and what to change."""

    name: str
    status: Status
    summary: str
    hint: str = ""
    seconds: float | None = None
    code: str | None = None  # the error code a device would get, where one applies
    panel_message: str | None = None  # what the panel or print queue would show

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"name": self.name, "status": self.status.value, "summary": self.summary}
        if self.hint:
            body["hint"] = self.hint
        if self.seconds is not None:
            body["ms"] = round(self.seconds * 1000, 1)
        if self.code is not None:
            body["code"] = self.code
        if self.panel_message is not None:
            body["panel_message"] = self.panel_message
        return body

    @classmethod
    def from_json(cls, raw: object) -> Step | None:
        """A step read back from a saved report; None when the entry is not one."""
        if not isinstance(raw, dict):
            return None
        name, status, summary = raw.get("name"), raw.get("status"), raw.get("summary")
        if not isinstance(name, str) or not isinstance(summary, str) or status not in Status._value2member_map_:
            return None
        ms = raw.get("ms")
        return cls(
            name=name,
            status=Status(status),
            summary=summary,
            hint=str(raw.get("hint") or ""),
            seconds=float(ms) / 1000 if isinstance(ms, int | float) else None,
            code=raw["code"] if isinstance(raw.get("code"), str) else None,
            panel_message=raw["panel_message"] if isinstance(raw.get("panel_message"), str) else None,
        )


def error_step(name: str, exc: BridgeError, *, hint: str = "", seconds: float | None = None) -> Step:
    """A FAIL step for an error a device would also get: its code and panel message."""
    detail = f" ({exc.detail})" if exc.detail and exc.detail != exc.panel_message else ""
    return Step(
        name=name,
        status=Status.FAIL,
        summary=f"{exc.code}{detail}",
        hint=hint or ADMIN_DETAIL.get(exc.code, ""),
        seconds=seconds,
        code=exc.code,
        panel_message=exc.message,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """The outcome of one tool run: ``subject`` names what was checked (a tenant, a device, a printer)."""

    tool: str
    subject: str
    started_at: datetime
    steps: tuple[Step, ...]
    tls_not_after: datetime | None = None
    signing_not_after: datetime | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(step.status is Status.FAIL for step in self.steps)

    @property
    def worst(self) -> Status:
        for status in (Status.FAIL, Status.WARN):
            if any(step.status is status for step in self.steps):
                return status
        return Status.PASS

    def to_json(self) -> dict[str, object]:
        return {
            "tool": self.tool,
            "subject": self.subject,
            "started_at": _iso(self.started_at),
            "result": "ok" if self.ok else "failed",
            "worst": self.worst.value,
            "tls_not_after": None if self.tls_not_after is None else _iso(self.tls_not_after),
            "signing_not_after": None if self.signing_not_after is None else _iso(self.signing_not_after),
            "steps": [step.to_json() for step in self.steps],
        }

    @classmethod
    def from_json(cls, raw: object) -> Report | None:
        """A saved report read back; None when it is not one (an old or damaged file)."""
        if not isinstance(raw, dict):
            return None
        tool, subject, started = raw.get("tool"), raw.get("subject"), _parse_iso(raw.get("started_at"))
        steps_raw = raw.get("steps")
        if not isinstance(tool, str) or not isinstance(subject, str) or started is None:
            return None
        if not isinstance(steps_raw, list):
            return None
        steps = tuple(s for s in (Step.from_json(item) for item in steps_raw) if s is not None)
        return cls(tool=tool, subject=subject, started_at=started, steps=steps,
                   tls_not_after=_parse_iso(raw.get("tls_not_after")),
                   signing_not_after=_parse_iso(raw.get("signing_not_after")))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def render_text(report: Report) -> str:
    """The report as a technician reads it in a terminal: one line per step, hints indented."""
    width = max((len(step.name) for step in report.steps), default=10)
    lines = [f"{report.tool} {report.subject}  ({_iso(report.started_at)})"]
    shows = "queue shows" if report.tool == "print-test" else "panel shows"
    for step in report.steps:
        timing = f"  [{step.seconds * 1000:.0f} ms]" if step.seconds is not None else ""
        lines.append(f"{step.status.value:4}  {step.name:<{width}}  {step.summary}{timing}")
        if step.panel_message is not None:
            code = f"  [{step.code}]" if step.code else ""
            lines.append(f"{'':4}  {'':<{width}}  {shows}: {step.panel_message}{code}")
        elif step.code and step.status is Status.FAIL:
            lines.append(f"{'':4}  {'':<{width}}  devices would get: {step.code}")
        if step.hint:
            for hint_line in step.hint.splitlines():
                lines.append(f"{'':4}  {'':<{width}}  -> {hint_line}")
    counts = {status: sum(1 for s in report.steps if s.status is status) for status in Status}
    tally = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
    lines.append(f"result: {'OK' if report.ok else 'FAILED'} ({tally})")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)
