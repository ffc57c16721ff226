"""EditConfig: every knob of LUSD with the paper's defaults, and the method presets."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lusd.errors import ConfigError
from lusd.inputs import parse_bool

#: The authors' SGD learning rate 1 on a loss scaled by 2000 / (64 * 64).
LUSD_LR = 2000 / 4096
#: Upper limits that keep one edit finite: the paper runs 300 steps at 512 pixels.
MAX_STEPS = 10_000
MAX_RESOLUTION = 4096


@dataclass(frozen=True)
class EditConfig:
    """All hyper-parameters of one edit (LUSD_SPEC defaults).

    ``method`` names the update rule (:mod:`lusd.rules`); the ``use_*`` switches give the
    ablations. A rule's own settings are ``options`` (``replace`` and ``to_dict`` treat
    them as fields).
    """

    method: str = "lusd"
    num_steps: int = 300
    #: longer side of the working image in pixels; 0 = the model's native size
    resolution: int = 0
    t_min: int = 50
    t_max: int = 950
    # LUSD direction
    lambda_reg: float = 0.02
    use_filter: bool = True
    tau0: float = 1e-2
    tau_decay: float = 0.99
    max_filter_retries: int = 1000
    #: filter retries allowed over a whole edit, as a multiple of num_steps; once spent, every
    #: sample is accepted, so an edit costs at most (1 + retry_budget) * num_steps UNet passes
    retry_budget: float = 2.0
    use_mask: bool = True
    #: the mask reads cross-attention at latent/mask_cross_factor and self-attention at
    #: latent/mask_self_factor (the nearest levels the UNet has); the paper's 4 and 2
    mask_cross_factor: int = 4
    mask_self_factor: int = 2
    mask_ema: float = 0.1
    progressive_mask: bool = True
    normalize: bool = True
    scale_high: float = 0.15
    scale_low: float = 0.01
    scale_k: float = 5.0
    lr: float = LUSD_LR
    # baselines (DDS / SDS): classifier-free guidance scale
    guidance_scale: float = 7.5
    # pasting the edit back into the full-resolution original
    paste_back: bool = True
    mask_dilate: float = 0.04
    mask_feather: float = 0.02
    mask_threshold: float = 0.25
    #: with a region: the crop around it grows by this fraction of the region's longer side
    #: on every side (more context, fewer pixels for the region; docs/regions.md)
    crop_margin: float = 0.0
    #: the rule's own settings as sorted (name, value) pairs, defaults filled in
    rule_settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        from lusd.rules import rule_class

        declared = {s.name: s for s in rule_class(self.method).settings}
        given = dict(self.rule_settings)
        unknown = set(given) - set(declared)
        if unknown:
            raise ConfigError(
                f"method {self.method} has no setting {', '.join(sorted(unknown))}"
                + (f"; its settings: {', '.join(declared)}" if declared else "")
            )
        values = {name: s.check(given.get(name, s.default)) for name, s in declared.items()}
        object.__setattr__(self, "rule_settings", tuple(sorted(values.items())))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} must lie in [{low}, {high}], got {value}")
        if not 0 <= self.t_min < self.t_max:
            raise ConfigError(f"need 0 <= t_min < t_max, got [{self.t_min}, {self.t_max})")
        if not 0 < self.mask_ema <= 1:
            raise ConfigError(f"mask_ema must lie in (0, 1], got {self.mask_ema}")
        if not 0 < self.tau_decay <= 1:
            raise ConfigError(f"tau_decay must lie in (0, 1], got {self.tau_decay}")
        for name in ("mask_cross_factor", "mask_self_factor"):
            value = getattr(self, name)
            if value < 1 or value > 64 or value & (value - 1):
                raise ConfigError(f"{name} must be a power of two (1, 2, 4, ... 64), got {value}")
        if self.resolution != 0 and not 8 <= self.resolution <= MAX_RESOLUTION:
            raise ConfigError(
                f"resolution must be 0 (native) or 8..{MAX_RESOLUTION} pixels, "
                f"got {self.resolution}"
            )
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    @property
    def options(self) -> dict[str, Any]:
        """The rule's own settings by name."""
        return dict(self.rule_settings)

    def replace(self, **changes: Any) -> EditConfig:
        """Return a copy with ``changes`` applied (fields, or the rule's settings); unknown
        names are a ConfigError. A change of ``method`` drops the old rule's settings."""
        from lusd.rules import rule_class

        method = changes.get("method", self.method)
        settings = {s.name for s in rule_class(method).settings}
        options = {} if method != self.method else self.options
        unknown = set(changes) - field_names() - settings
        if unknown:
            raise ConfigError(
                f"unknown EditConfig field(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(field_names() | settings))}"
            )
        options.update({k: v for k, v in changes.items() if k in settings})
        fields_changed = {k: _coerce(k, v) for k, v in changes.items() if k not in settings}
        return dataclasses.replace(
            self, **fields_changed, rule_settings=tuple(sorted(options.items()))
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field and the rule's settings, by name."""
        values = dataclasses.asdict(self)
        del values["rule_settings"]
        return {**values, **self.options}

    def row_hash_dict(self) -> dict[str, Any]:
        """``to_dict`` as batch journals hash it: fields added since they did so are left
        out while they hold their default, so a journal stays valid after an upgrade."""
        return {
            k: v for k, v in self.to_dict().items() if _ADDED_AFTER_ROW_HASH.get(k, _UNSET) != v
        }

    def digest(self) -> str:
        """Short stable hash of every value (used to detect changed batch rows).

        Fields added in later versions are left out while they hold their default, so a
        batch journal written by an earlier lusd stays valid after an upgrade.
        """
        values = {k: v for k, v in self.to_dict().items() if _ADDED_LATER.get(k, _UNSET) != v}
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EditConfig:
        return cls().replace(**values)


#: Closed ranges of numeric fields (NaN fails every comparison, so it is refused too).
_RANGES: dict[str, tuple[float, float]] = {
    "num_steps": (1, MAX_STEPS),
    "lambda_reg": (0, 1),
    "tau0": (0, 1e6),
    "max_filter_retries": (0, 100_000),
    "retry_budget": (0, 1000),
    "scale_high": (0, 1e3),
    "scale_low": (0, 1e3),
    "scale_k": (-1e3, 1e3),
    "lr": (0, 1e6),
    "guidance_scale": (0, 1e4),
    "mask_dilate": (0, 1),
    "mask_feather": (0, 1),
    "mask_threshold": (0, 1),
    "crop_margin": (0, 10),
}
_FLOAT_FIELDS = (
    "lambda_reg", "tau0", "tau_decay", "retry_budget", "mask_ema", "scale_high", "scale_low",
    "scale_k", "lr", "guidance_scale", "mask_dilate", "mask_feather", "mask_threshold",
    "crop_margin",
)  # fmt: skip
_UNSET = object()
#: Fields added after batch journals hashed rows by ``to_dict``, with their defaults.
_ADDED_AFTER_ROW_HASH: dict[str, Any] = {"retry_budget": 2.0, "crop_margin": 0.0}
#: Fields added after 0.1.0's first batch journals, with their defaults (see ``digest``).
_ADDED_LATER: dict[str, Any] = {
    "mask_cross_factor": 4,
    "mask_self_factor": 2,
    **_ADDED_AFTER_ROW_HASH,
}

#: A model folder may carry this file with its own EditConfig defaults.
MODEL_CONFIG_FILE = "lusd_config.json"


def read_model_config(folder: str | Path) -> EditConfig:
    """The EditConfig defaults of a model folder (``lusd_config.json``), else the paper's.

    Keys starting with ``_`` are comments; an unknown key or invalid JSON is a ConfigError.
    The file is read once per version of it (a front end checks a request against it
    before the model loads, and loading needs it again).
    """
    path = Path(folder) / MODEL_CONFIG_FILE
    try:
        info = path.stat()
    except OSError:
        return EditConfig()
    return _read_model_config(path.resolve(), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=32)
def _read_model_config(path: Path, mtime_ns: int, size: int) -> EditConfig:
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of EditConfig fields")
    try:
        return EditConfig.from_dict({k: v for k, v in values.items() if not k.startswith("_")})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def model_default_config(model: str | None) -> EditConfig:
    """The model's own defaults (``lusd_config.json`` in its folder), without loading it.

    Model ``None`` is the shipped shapes model. Anything that is not a local folder
    (a hub id, a single file) gets the paper's values, as the pipeline does.
    """
    folder = _model_folder(model)
    return EditConfig() if folder is None else read_model_config(folder)


def _model_folder(model: str | None) -> Path | None:
    if model is None:
        from lusd.shapes import SHAPES_MODEL_DIR

        return Path(SHAPES_MODEL_DIR)
    p = Path(model).expanduser()
    return p if p.is_dir() else None


def field_names() -> set[str]:
    """EditConfig's fields as users name them (the rules' settings are not among them)."""
    return {f.name for f in fields(EditConfig)} - {"rule_settings"}


def setting_names() -> set[str]:
    """Every name a config may set: the fields and every rule's settings."""
    from lusd.rules import RULES

    return field_names() | {s.name for rule in RULES.values() for s in rule.settings}


def _coerce(name: str, value: Any) -> Any:
    """Convert strings (CLI, CSV) to the field's type."""
    kind = type(getattr(EditConfig(), name))
    if isinstance(value, kind) or kind is str:
        return value
    try:
        if kind is bool:
            return parse_bool(value) if isinstance(value, str) else bool(value)
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} expects {kind.__name__}, got {value!r}") from None


def preset_config(
    preset: str = "lusd",
    base: EditConfig | None = None,
    *,
    keep_base: bool = False,
    **overrides: Any,
) -> EditConfig:
    """Build the config of ``preset`` on top of ``base``, then ``overrides``.

    ``base`` is normally a model's own defaults (``lusd_config.json``), which apply to
    the LUSD presets only: the baselines run as their authors defined them.
    ``keep_base`` makes ``base`` (a caller's own config) the start of every preset.
    """
    from lusd.rules import PRESETS

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    changes = PRESETS[preset]
    use_base = base is not None and (keep_base or changes["method"] == "lusd")
    start = base if use_base else EditConfig()
    return start.replace(**changes).replace(**overrides)
