"""How well an LUSD mask sits on the edited object, judged by the shapes oracle.

* colour and shape changes: ``mask_ratio`` = the mask's mean inside the grid cell of the
  changed object over its mean in the rest of the image (1 = no localisation);
* adds: ``mask_add_share`` = the share of the mask's mass on the bounding box of the object
  that appeared, beside ``mask_add_area``, that box's share of the image (what a uniform
  mask would score).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from lusd.errors import LUSDError
from lusd.shapes import oracle

#: A mask "localises" a change when its ratio reaches this.
LOCALISED_RATIO = 2.0


def _mask_array(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    m = mask.convert("L").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(m, dtype=np.float64) / 255.0


def _cell_region(cell: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    row, col = divmod(cell, 3)
    region = np.zeros(shape, bool)
    region[row * h // 3 : (row + 1) * h // 3, col * w // 3 : (col + 1) * w // 3] = True
    return region


def cell_ratio(mask: np.ndarray, cell: int) -> float:
    """Mean of ``mask`` inside grid cell ``cell`` over its mean elsewhere."""
    inside = _cell_region(cell, mask.shape)
    outside = float(mask[~inside].mean())
    mean_in = float(mask[inside].mean())
    if outside == 0.0:
        return math.inf if mean_in > 0 else math.nan
    return mean_in / outside


def mask_localisation(
    source: Image.Image,
    edited: Image.Image,
    mask: Image.Image,
    source_prompt: str,
    target_prompt: str,
) -> dict[str, float]:
    """``mask_ratio`` (a colour/shape change) or ``mask_add_share`` and ``mask_add_area``
    (an add whose new object the oracle finds); empty when neither applies."""
    try:
        before, _ = oracle.parse_caption(source_prompt)
        after, _ = oracle.parse_caption(target_prompt)
    except LUSDError:
        return {}
    m = _mask_array(mask, source.size)
    if len(after) == len(before) + 1:
        return _add_share(source, edited, m)
    if len(after) != len(before):
        return {}
    changed = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    found = oracle.detect(source)
    owners = oracle.assign(before, found)
    if len(changed) != 1 or owners is None:
        return {}
    return {"mask_ratio": cell_ratio(m, found[owners[changed[0]]].cell)}


def _add_share(source: Image.Image, edited: Image.Image, mask: np.ndarray) -> dict[str, float]:
    if edited.size != source.size:
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    taken = {d.cell for d in oracle.detect(source)}
    new = [d for d in oracle.detect(edited) if d.cell not in taken]
    total = float(mask.sum())
    if len(new) != 1 or total == 0.0:
        return {}
    x0, y0, x1, y1 = new[0].bbox
    box = np.zeros(mask.shape, bool)
    box[y0 : y1 + 1, x0 : x1 + 1] = True
    return {
        "mask_add_share": float(mask[box].sum()) / total,
        "mask_add_area": float(box.mean()),
    }


def summarize_localisation(records: list[dict]) -> dict[str, float]:
    """Median ratio and share localised (ratio >= 2) over the records with a ``mask_ratio``;
    mean add share and area over those with a ``mask_add_share``. Empty keys are left out."""
    out: dict[str, float] = {}
    ratios = [r["mask_ratio"] for r in records if _finite(r.get("mask_ratio"))]
    if ratios:
        out["mask_ratio_median"] = float(np.median(ratios))
        out["mask_localised"] = float(np.mean([v >= LOCALISED_RATIO for v in ratios]))
        out["mask_ratio_n"] = len(ratios)
    shares = [r for r in records if _finite(r.get("mask_add_share"))]
    if shares:
        out["mask_add_share"] = float(np.mean([r["mask_add_share"] for r in shares]))
        out["mask_add_area"] = float(np.mean([r["mask_add_area"] for r in shares]))
        out["mask_add_n"] = len(shares)
    return out


def _finite(value) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)
