"""Shapes-world judging of an edit through ``lusd.shapes`` (SHAPES_WORLD.md, "Edits").

Used only when the batch ran the shapes model; when ``lusd.shapes`` is missing
the metrics are skipped with a note, never faked.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: Background pixels closer than this (px) to an object are not counted.
MARGIN = 3


def oracle_available() -> bool:
    try:
        from lusd.shapes import oracle  # noqa: F401
    except ImportError:
        return False
    return True


def _oracle() -> Any:
    from lusd.shapes import oracle

    return oracle


def oracle_metrics(
    source: Image.Image, edited: Image.Image, target_prompt: str
) -> dict[str, float]:
    """``oracle_success`` (1/0: the edited image shows exactly the target caption) and
    ``oracle_bg_change`` (mean |diff| on 0-255 over input-background pixels more than
    3 px from every object found in the input or the output). Empty if unavailable.
    """
    if not oracle_available():
        return {}
    oracle = _oracle()
    from lusd.errors import LUSDError

    if edited.size != source.size:
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    out: dict[str, float] = {}
    try:
        out["oracle_success"] = float(bool(oracle.matches(edited, target_prompt)))
    except LUSDError as exc:  # not a shapes-world caption
        log.info("oracle cannot judge %r: %s", target_prompt, exc)
    objects = _dilate(oracle.object_mask(source) | oracle.object_mask(edited), MARGIN)
    keep = ~objects
    if keep.any():
        a = np.asarray(source.convert("RGB"), dtype=np.float64)
        b = np.asarray(edited.convert("RGB"), dtype=np.float64)
        out["oracle_bg_change"] = float(np.abs(a - b)[keep].mean())
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels (pure numpy)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out
