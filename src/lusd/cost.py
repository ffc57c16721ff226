"""How long one edit takes on this machine, and what it costs at a given hourly price.

The estimate is measured, not modelled: a warm-up edit of one step, then edits of one and
of ``1 + probe_steps`` steps at the model's native size. Their difference is the time per
step; the rest (text and VAE encoding, decoding, paste-back) is the fixed cost of an edit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from lusd.config import EditConfig
from lusd.errors import ConfigError

_PROBE_SOURCE, _PROBE_TARGET = "a red circle", "a red circle and a blue square"


@dataclass(frozen=True)
class EditTimeEstimate:
    """Seconds per edit extrapolated from a few probe steps (an estimate, not a promise)."""

    seconds_per_edit: float
    seconds_per_step: float
    fixed_seconds: float
    num_steps: int
    probe_steps: int
    device: str
    image_size: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "is_estimate": True}


@dataclass(frozen=True)
class EditCost:
    hour_price: float
    per_edit: float
    per_1000: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def estimate_edit_seconds(pipe: Any, config: EditConfig, probe_steps: int = 3) -> EditTimeEstimate:
    """Time a few probe iterations of ``pipe`` and extrapolate to ``config.num_steps``."""
    import torch
    from PIL import Image

    if probe_steps < 1:
        raise ConfigError(f"--probe-steps must be at least 1, got {probe_steps}")
    size = int(pipe.native_size)
    picture = Image.new("RGB", (size, size), (128, 128, 128))

    def timed(steps: int) -> float:
        generator = torch.Generator("cpu").manual_seed(0)
        start = time.perf_counter()
        pipe(
            picture,
            _PROBE_SOURCE,
            _PROBE_TARGET,
            config=config.replace(num_steps=steps),
            preset="lusd",
            generator=generator,
        )
        return time.perf_counter() - start

    timed(1)  # warm-up: lazy initialisation, allocator, kernels
    one, many = timed(1), timed(1 + probe_steps)
    per_step = max((many - one) / probe_steps, 0.0)
    fixed = max(one - per_step, 0.0)
    return EditTimeEstimate(
        seconds_per_edit=fixed + per_step * config.num_steps,
        seconds_per_step=per_step,
        fixed_seconds=fixed,
        num_steps=config.num_steps,
        probe_steps=probe_steps,
        device=str(getattr(pipe, "device", "cpu")),
        image_size=size,
    )


def edit_cost(seconds_per_edit: float, hour_price: float) -> EditCost:
    """Cost of one edit and of 1,000 at ``hour_price`` per hour of the machine (or GPU)."""
    if hour_price < 0:
        raise ConfigError(f"--hour-price must not be negative, got {hour_price}")
    per_edit = seconds_per_edit / 3600.0 * hour_price
    return EditCost(hour_price, per_edit, per_edit * 1000)
