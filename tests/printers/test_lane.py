"""The lane of requests without credentials: a burst, then a steady rate, refusals that take no turn."""

from __future__ import annotations

import pytest
from pyipp.enums import IppStatus

from bridge.errors import BridgeError
from printers.errors import PrinterBusy
from printers.lane import Lane


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_turn_per_interval_then_busy() -> None:
    clock = Clock()
    lane = Lane(rate=10, burst=3, max_wait=0.25, clock=clock)
    assert [lane.admit() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lane.admit() == pytest.approx(0.1)
    assert lane.admit() == pytest.approx(0.2)
    with pytest.raises(PrinterBusy) as refused:
        lane.admit()  # its turn would be 0.3 s away
    assert refused.value.http_status == 503 and refused.value.ipp_status == IppStatus.ERROR_BUSY
    assert refused.value.retry_after >= 1 and isinstance(refused.value, BridgeError)
    assert refused.value.hold == 0.25  # refused no faster than a waiting request would be served
    with pytest.raises(PrinterBusy):
        lane.admit()  # a refusal took no turn: still 0.3 s away
    clock.now += 0.1
    assert lane.admit() == pytest.approx(0.2)


def test_an_idle_lane_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    lane = Lane(rate=10, burst=3, max_wait=0.0, clock=clock)
    for _ in range(3):
        lane.admit()
    clock.now += 60  # a long quiet spell does not bank more than the burst
    assert [lane.admit() for _ in range(3)] == [0.0, 0.0, 0.0]
    with pytest.raises(PrinterBusy):
        lane.admit()
    clock.now += 0.1
    assert lane.admit() == 0.0


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"burst": 0}, {"max_wait": -1}])
def test_a_lane_needs_sane_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Lane(**kwargs)  # type: ignore[arg-type]
