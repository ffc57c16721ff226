"""The seconds-per-edit estimate and the cost arithmetic, on a fake clock."""

from __future__ import annotations

import pytest

import lusd.cost as cost
from lusd.config import EditConfig
from lusd.errors import ConfigError


class ClockPipe:
    """A pipeline whose edits take 2 s plus 0.5 s per step on a fake clock."""

    native_size = 32
    device = "cpu"

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls: list[int] = []

    def __call__(self, image, source, target, *, config, **kwargs):
        self.calls.append(config.num_steps)
        self.clock[0] += 2.0 + 0.5 * config.num_steps
        assert image.size == (32, 32)


def test_estimate_extrapolates_probe_steps_to_num_steps(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(cost.time, "perf_counter", lambda: clock[0])
    pipe = ClockPipe(clock)
    estimate = cost.estimate_edit_seconds(pipe, EditConfig(num_steps=200), probe_steps=4)
    assert pipe.calls == [1, 1, 5]  # warm-up, one step, 1 + probe steps
    assert estimate.seconds_per_step == pytest.approx(0.5)
    assert estimate.fixed_seconds == pytest.approx(2.0)
    assert estimate.seconds_per_edit == pytest.approx(102.0)
    assert estimate.to_dict()["is_estimate"] is True
    with pytest.raises(ConfigError, match="probe-steps"):
        cost.estimate_edit_seconds(pipe, EditConfig(), probe_steps=0)


def test_cost_per_edit_and_per_thousand():
    priced = cost.edit_cost(36.0, 2.0)  # 36 s at 2 per hour
    assert priced.per_edit == pytest.approx(0.02) and priced.per_1000 == pytest.approx(20.0)
    with pytest.raises(ConfigError, match="negative"):
        cost.edit_cost(1.0, -1.0)
