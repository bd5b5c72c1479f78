"""A printer process that dies (SIGKILL) at one chosen point of a job's delivery.

``python -m tests.printers.crash_printer CONFIG POINT`` serves the printer of
CONFIG without authentication (as ``bench/ipp_ingest.py --serve-printer``
does) and, through ``sys.setprofile``, kills itself the moment delivery
reaches POINT.  The printer's own code runs unchanged; the profiler only
watches calls and returns, so the state left on disk is exactly what a crash
there leaves.  Points:

- ``delivered-not-recorded``: the sink has the job, its row is about to become completed;
- ``completed-committed``: the completed row is committed, the spool file not yet removed (on SQLite the
  store's calls never suspend, so ``JobStore.update``'s only "return" is its end);
- ``spool-file-removed``: the spool file has just been removed;
- ``outbox-written``: the outbox holds the document and its manifest (the worker thread's copy returned).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from aiohttp import web

from bridge.config import load_config
from printers import delivery
from printers.jobs import JobState
from printers.jobstore import JobStore
from printers.server import make_printer_app
from printers.spool import Spool

DELIVERY_FILE = Path(delivery.__file__).resolve()


def _completing(frame: FrameType) -> bool:
    """JobStore.update(job, state=COMPLETED, ...): the worker's verdict."""
    changes = frame.f_locals.get("changes")
    return isinstance(changes, dict) and changes.get("state") == JobState.COMPLETED


def _outbox_copy(frame: FrameType) -> bool:
    return frame.f_code.co_name == "work" and Path(frame.f_code.co_filename).resolve() == DELIVERY_FILE


Point = tuple[str, Callable[[FrameType], bool]]
POINTS: dict[str, Point] = {
    "delivered-not-recorded": ("call", lambda f: f.f_code is JobStore.update.__code__ and _completing(f)),
    "completed-committed": ("return", lambda f: f.f_code is JobStore.update.__code__ and _completing(f)),
    "spool-file-removed": ("return", lambda f: f.f_code is Spool.remove.__code__),
    "outbox-written": ("return", _outbox_copy),
}


def _hook(point: Point) -> Callable[[FrameType, str, Any], None]:
    event_wanted, matches = point

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == event_wanted and matches(frame):
            os.kill(os.getpid(), signal.SIGKILL)

    return profile


def main(config_path: str, point_name: str) -> None:
    config = load_config(config_path, require_files=False)
    assert config.printer is not None
    app = make_printer_app(config, auth_required=False)
    hook = _hook(POINTS[point_name])
    threading.setprofile(hook)  # the outbox copies in a worker thread
    sys.setprofile(hook)
    web.run_app(app, host=config.printer.host, port=config.printer.port, print=None, access_log=None)


if __name__ == "__main__":
    main(*sys.argv[1:3])
