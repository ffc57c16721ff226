"""The update-rule interface: what one score-distillation method declares and does.

A rule is one class: its settings (with defaults and ranges), the conditioning it needs,
its cost, and ``step``, which moves every lane's latent once. The loop
(:class:`lusd.distill.Distiller`) owns sampling, UNet calls and bookkeeping; a rule only
decides what to ask the UNet and how to update. docs/design.md shows how to add one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from lusd.errors import ConfigError
from lusd.inputs import parse_bool

if TYPE_CHECKING:
    from lusd.config import EditConfig
    from lusd.distill import Distiller as Loop


@dataclass(frozen=True)
class Setting:
    """A rule's own setting: name, default, closed range, one line of help."""

    name: str
    default: float | int | bool
    low: float | None = None
    high: float | None = None
    help: str = ""

    def check(self, value: Any) -> Any:
        """``value`` as the setting's type, or a ConfigError saying what is wrong."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(value, str):
                    value = parse_bool(value)
                elif not isinstance(value, bool):
                    raise ValueError(value)
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                value = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{self.name} expects {kind.__name__}, got {value!r}") from None
        if kind is not bool and not (
            (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        ):
            raise ConfigError(f"{self.name} must lie in [{self.low}, {self.high}], got {value}")
        return value


class UpdateRule:
    """One score-distillation method.

    Class attributes declare it; an instance belongs to one run of the loop (it may keep
    per-lane state, such as LUSD's mask average, between steps).
    """

    #: the name ``EditConfig.method`` uses
    name: ClassVar[str]
    #: one line for tables and error messages
    summary: ClassVar[str] = ""
    #: settings of this rule only; shared knobs (steps, t range, lr, guidance) live in
    #: EditConfig
    settings: ClassVar[tuple[Setting, ...]] = ()
    #: presets this rule provides: name -> EditConfig changes (``method`` is added)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether the rule needs the empty prompt's conditioning (classifier-free guidance)
    needs_empty: ClassVar[bool] = False
    #: whether the rule reads the focus words' attention (the LUSD mask)
    reads_attention: ClassVar[bool] = False
    #: whether the source prompt matters (SDS reads the target only)
    compares_prompts: ClassVar[bool] = True
    #: UNet passes per iteration (filter retries add more)
    unet_passes: ClassVar[int] = 1
    #: UNet batch rows per lane in each pass
    rows_per_lane: ClassVar[int] = 2
    #: whether a step back-propagates through the UNet (then the loop runs outside
    #: inference mode)
    needs_grad: ClassVar[bool] = False

    def __init__(self, config: EditConfig):
        self.config = config

    def option(self, name: str) -> Any:
        """This rule's setting ``name`` as the edit's config holds it."""
        return self.config.options[name]

    @classmethod
    def check_model(cls, unet: Any) -> None:
        """Raise ConfigError when the rule cannot run on ``unet``."""

    def start(self, loop: Loop) -> None:
        """Called once before the first step."""

    def step(self, loop: Loop, step: int, latents: torch.Tensor) -> torch.Tensor:
        """Every lane's latent (lanes, C, h, w) after iteration ``step``."""
        raise NotImplementedError

    def mask(self, lane: int) -> torch.Tensor | None:
        """The mask lane ``lane``'s edit followed (None: the whole picture)."""
        return None
