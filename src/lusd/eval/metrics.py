"""Pixel metrics and the CLIP-R success curve / CLIP-AUC (LUSD_SPEC, "Evaluation").

Pixel values are on the [0, 1] scale (as MagicBrush reports L1/L2); the
"outside the mask" variants only look at pixels whose mask value is below a
threshold, i.e. what the edit should have left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

#: CLIP-AUC integrates the success rate over r in [R_LOW, R_HIGH] (LUSD_SPEC).
R_LOW, R_HIGH = 1.00, 1.40
#: Number of Simpson intervals over [R_LOW, R_HIGH] (even; step 0.01).
AUC_INTERVALS = 40
#: L1* and CLIP-I* sweep r over [R_LOW, STAR_HIGH] (LUSD_SPEC), in steps of 0.01.
STAR_HIGH, STAR_INTERVALS = 1.22, 22


def _array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    arr = np.asarray(image, dtype=np.float64)
    return arr / 255.0 if arr.max(initial=0) > 1.0 else arr


def pixel_metrics(
    source: Image.Image | np.ndarray,
    edited: Image.Image | np.ndarray,
    mask: Image.Image | np.ndarray | None = None,
    threshold: float = 0.25,
) -> dict[str, float]:
    """L1 and L2 (mean absolute / mean squared difference) whole and outside the mask.

    The edited image is resized to the source size if needed. ``mask`` is in
    [0, 255] (mode "L") or [0, 1]; "outside" = mask < ``threshold``. Returns also
    ``bg_change``: the outside L1 on the 0-255 scale (the report's KPI).
    """
    a = _array(source)
    if isinstance(edited, Image.Image) and edited.size != (a.shape[1], a.shape[0]):
        edited = edited.resize((a.shape[1], a.shape[0]), Image.Resampling.BICUBIC)
    b = _array(edited)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    diff = a - b
    out = {"l1": float(np.abs(diff).mean()), "l2": float((diff**2).mean())}
    if mask is not None:
        m = _mask_array(mask, a.shape[:2])
        outside = m < threshold
        if outside.any():
            d = diff[outside]
            out["l1_outside"] = float(np.abs(d).mean())
            out["l2_outside"] = float((d**2).mean())
            out["bg_change"] = out["l1_outside"] * 255.0
        out["mask_area"] = float((~outside).mean())
    return out


def _mask_array(mask: Image.Image | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(mask, Image.Image):
        m = mask.convert("L")
        if m.size != (shape[1], shape[0]):
            m = m.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        return np.asarray(m, dtype=np.float64) / 255.0
    arr = np.asarray(mask, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"mask shape {arr.shape} differs from image {shape}")
    return arr / 255.0 if arr.max(initial=0) > 1.0 else arr


def success_rate(clip_r: Sequence[float], r: float) -> float:
    """Fraction of edits whose CLIP-R is at least ``r``."""
    values = np.asarray(clip_r, dtype=np.float64)
    return float((values >= r).mean()) if values.size else float("nan")


def simpson(y: Sequence[float], x: Sequence[float]) -> float:
    """Composite Simpson's rule on equally spaced ``x`` (an even number of intervals)."""
    ya = np.asarray(y, dtype=np.float64)
    xa = np.asarray(x, dtype=np.float64)
    n = len(xa) - 1
    if n < 2 or n % 2:
        raise ValueError("Simpson's rule needs an even number (>= 2) of intervals")
    h = (xa[-1] - xa[0]) / n
    if not np.allclose(np.diff(xa), h):
        raise ValueError("Simpson's rule needs equally spaced points")
    return float(h / 3 * (ya[0] + ya[-1] + 4 * ya[1:-1:2].sum() + 2 * ya[2:-1:2].sum()))


def _thresholds(low: float, high: float, intervals: int) -> np.ndarray:
    """Equally spaced thresholds, rounded so that a CLIP-R of exactly 1.13 meets r = 1.13."""
    return np.round(np.linspace(low, high, intervals + 1), 10)


def success_curve(
    clip_r: Sequence[float],
    low: float = R_LOW,
    high: float = R_HIGH,
    intervals: int = AUC_INTERVALS,
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds r and the success rate at each (CLIP-R >= r)."""
    r = _thresholds(low, high, intervals)
    return r, np.array([success_rate(clip_r, float(t)) for t in r])


def clip_auc(
    clip_r: Sequence[float],
    low: float = R_LOW,
    high: float = R_HIGH,
    intervals: int = AUC_INTERVALS,
) -> float:
    """Area under the success-rate curve over r in [low, high] by Simpson's rule.

    Not normalised: a method that always succeeds scores ``high - low`` (0.40).
    """
    r, rate = success_curve(clip_r, low, high, intervals)
    return simpson(rate, r)


def swept_mean(
    values: Sequence[float],
    clip_r: Sequence[float],
    low: float = R_LOW,
    high: float = STAR_HIGH,
    intervals: int = STAR_INTERVALS,
) -> float | None:
    """L1* / CLIP-I*: a background metric of the *successful* edits, averaged over r.

    At each threshold r the metric is averaged over the edits with CLIP-R >= r; that
    curve is integrated over [low, high] by Simpson's rule and divided by ``high - low``,
    so the result is on the metric's own scale. None when no edit reaches ``high`` (the
    curve is undefined there).
    """
    v = np.asarray(values, dtype=np.float64)
    r_values = np.asarray(clip_r, dtype=np.float64)
    if v.shape != r_values.shape:
        raise ValueError("one CLIP-R per metric value is needed")
    r = _thresholds(low, high, intervals)
    curve = []
    for threshold in r:
        chosen = r_values >= threshold
        if not chosen.any():
            return None
        curve.append(v[chosen].mean())
    return simpson(curve, r) / (high - low)
