"""Shapes-world judging of an edit through ``lusd.shapes`` (SHAPES_WORLD.md, "Edits").

Used only when the batch ran the shapes model; when ``lusd.shapes`` is missing
the metrics are skipped with a note, never faked.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from PIL import Image

from lusd.errors import LUSDError

log = logging.getLogger(__name__)


def oracle_available() -> bool:
    try:
        from lusd.shapes import edits, oracle  # noqa: F401
    except ImportError:
        return False
    return True


def oracle_metrics(
    source: Image.Image,
    edited: Image.Image,
    target_prompt: str,
    source_prompt: str = "",
    mask: Image.Image | None = None,
) -> dict[str, float]:
    """``oracle_success`` (1/0) and ``oracle_bg_change`` (SHAPES_WORLD.md definitions).

    Success: the edited image shows exactly the target caption's objects; for an
    "add" edit (the target has one object more than the source) the new object
    may sit in any cell. Background change: mean |diff| on 0-255 over input
    background pixels more than 3 px from every object in the input or the output.
    With the edit's ``mask``: where it sits (``lusd.shapes.mask_metrics``).
    Empty when ``lusd.shapes`` is not installed.
    """
    if not oracle_available():
        return {}
    from lusd.shapes.edits import background_change

    if edited.size != source.size:
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    out: dict[str, float] = {"oracle_bg_change": background_change(source, edited)}
    try:
        out["oracle_success"] = float(shapes_success(edited, target_prompt, source_prompt))
    except LUSDError as exc:  # not a shapes-world caption
        log.info("oracle cannot judge %r: %s", target_prompt, exc)
    if mask is not None:
        from lusd.shapes.mask_metrics import mask_localisation

        out.update(mask_localisation(source, edited, mask, source_prompt, target_prompt))
    return out


def shapes_success(edited: Image.Image, target_prompt: str, source_prompt: str = "") -> bool:
    from lusd.shapes import oracle

    expected, bg = oracle.parse_caption(target_prompt)
    try:
        before, _ = oracle.parse_caption(source_prompt) if source_prompt.strip() else ([], None)
    except LUSDError:
        before = []
    added = [e for e in expected if e not in before]
    if before and len(expected) == len(before) + 1 and len(added) == 1:
        new = added[0]
        expected = [e for e in expected if e is not new] + [replace(new, size=None, cell=None)]
    found = oracle.detect(edited)
    if len(found) != len(expected) or oracle.assign(expected, found) is None:
        return False
    return bg is None or oracle.background(edited) == bg
