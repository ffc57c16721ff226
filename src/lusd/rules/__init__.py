"""Update rules by name, and the presets they provide (docs/design.md, "Adding a rule")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lusd.errors import ConfigError
from lusd.rules.base import Setting, UpdateRule
from lusd.rules.cds import CDS
from lusd.rules.dds import DDS
from lusd.rules.lusd import LUSD
from lusd.rules.pds import PDS
from lusd.rules.sds import SDS

if TYPE_CHECKING:
    from lusd.config import EditConfig

#: every rule by its name; a new rule adds one entry here
RULES: dict[str, type[UpdateRule]] = {rule.name: rule for rule in (LUSD, DDS, SDS, CDS, PDS)}

#: every preset: the rule's name as ``method`` plus its changes to EditConfig's defaults;
#: each rule's own preset first, then variants such as the LUSD ablations
PRESETS: dict[str, dict[str, Any]] = {
    preset: {"method": rule.name, **changes}
    for main in (True, False)
    for rule in RULES.values()
    for preset, changes in rule.presets.items()
    if (preset == rule.name) == main
}


def rule_class(name: str) -> type[UpdateRule]:
    """The rule called ``name``, or a ConfigError listing the known ones."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown method {name!r}: use {', '.join(RULES)}") from None


def rule_for(config: EditConfig) -> UpdateRule:
    """A fresh instance of the config's rule, for one run of the loop."""
    return rule_class(config.method)(config)


__all__ = ["PRESETS", "RULES", "Setting", "UpdateRule", "rule_class", "rule_for"]
