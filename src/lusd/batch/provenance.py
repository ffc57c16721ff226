"""What a batch run may ship: the model's licence, the cost per image, each output's disclosure."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputDisclosure:
    """Whether one output file discloses the AI edit (XMP) and how its C2PA manifest fares."""

    xmp: bool
    #: "absent", "unchecked", "Invalid", "Valid", "Trusted" or "missing" (no file)
    c2pa: str

    @property
    def label(self) -> str:
        if self.c2pa == "missing":
            return "output missing"
        parts = ["XMP ✓" if self.xmp else "no XMP disclosure"]
        if self.c2pa not in ("absent", "unchecked"):
            parts.append(f"C2PA {self.c2pa.lower()}")
        return " · ".join(parts)


def license_line(meta: str | None) -> str:
    """One line for the report's header from the journal's ``license`` meta (JSON)."""
    try:
        info = json.loads(meta) if meta else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        return "licence: not recorded (run lusd batch again to record it)"
    return (
        f"licence {info.get('license', '?')} ({info.get('license_source', '?')}) · "
        f"commercial use: {info.get('commercial_use', '?')} — {info.get('license_note', '')}"
    )


def cost_per_image(seconds: list[float], hour_price: float | None) -> float | None:
    """Median seconds per finished edit at ``hour_price`` per hour; None without either."""
    if hour_price is None or not seconds:
        return None
    return statistics.median(seconds) / 3600.0 * hour_price


def output_disclosure(path: Path, check_c2pa: bool) -> OutputDisclosure:
    """Read one output's XMP (and, when asked, validate its C2PA manifest)."""
    from lusd.disclosure import read_disclosure
    from lusd.errors import LUSDError

    if not path.is_file():
        return OutputDisclosure(False, "missing")
    try:
        xmp = read_disclosure(path).discloses_ai
    except LUSDError:
        return OutputDisclosure(False, "missing")
    state = "unchecked"
    if check_c2pa:
        from lusd.credentials import read_credentials

        state = read_credentials(path).state
    return OutputDisclosure(xmp, state)
