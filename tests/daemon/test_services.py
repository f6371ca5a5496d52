"""The daemon's service lifecycle: start in order, stop in reverse on every path, late ones logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from trackiod.daemon.services import Services


class Part:
    def __init__(self, name: str, log: list[str], fail_start: bool = False, late: bool = False) -> None:
        self.name, self.log, self.fail_start, self.late = name, log, fail_start, late
        self.stop_timeout_s = 0.1

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    def stop(self, timeout: float) -> bool:
        self.log.append(f"stop {self.name}")
        return not self.late

    def status(self) -> dict[str, Any]:
        return {self.name: True}


def test_started_services_stop_in_reverse_once_and_late_ones_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    services = Services([Part("a", log), Part("b", log, late=True), Part("c", log)])
    services.start()
    assert services.status() == {"a": True, "b": True, "c": True}
    with caplog.at_level(logging.WARNING, logger="trackiod"):
        services.stop()
        services.stop()  # a second call (the exit path after a failed start) stops nothing twice
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert "b did not stop within" in caplog.text


def test_a_service_that_fails_to_start_stops_the_ones_before_it() -> None:
    log: list[str] = []
    services = Services([Part("a", log), Part("b", log), Part("c", log, fail_start=True)])
    with pytest.raises(RuntimeError, match="c cannot start"):
        services.start()
    assert log == ["start a", "start b", "stop b", "stop a"]
