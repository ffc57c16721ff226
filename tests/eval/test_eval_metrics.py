"""Metric arithmetic against hand-computed values: pixels, Simpson, success curve, CLIP-AUC."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lusd.eval.metrics import (
    clip_auc,
    pixel_metrics,
    simpson,
    success_curve,
    success_rate,
    swept_mean,
)


def test_pixel_metrics_whole_and_outside_mask():
    src = np.zeros((2, 2, 3), np.uint8)
    out = src.copy()
    out[0, 0] = 255  # one pixel fully changed: 3 of 12 values differ by 1.0
    out[1, 1] = (51, 0, 0)  # 0.2 in one channel
    mask = np.zeros((2, 2), np.uint8)
    mask[0, 0] = 255
    m = pixel_metrics(Image.fromarray(src), Image.fromarray(out), Image.fromarray(mask))
    assert m["l1"] == pytest.approx((3 * 1.0 + 0.2) / 12)
    assert m["l2"] == pytest.approx((3 * 1.0 + 0.04) / 12)
    # outside = 3 pixels (9 values), one of them differs by 0.2
    assert m["l1_outside"] == pytest.approx(0.2 / 9)
    assert m["l2_outside"] == pytest.approx(0.04 / 9)
    assert m["bg_change"] == pytest.approx(0.2 / 9 * 255)
    assert m["mask_area"] == pytest.approx(0.25)


def test_pixel_metrics_without_mask_and_identity():
    img = Image.new("RGB", (5, 3), (10, 20, 30))
    assert pixel_metrics(img, img) == {"l1": 0.0, "l2": 0.0}


def test_simpson_is_exact_for_cubics_and_checks_input():
    x = np.linspace(0.0, 2.0, 5)
    assert simpson(x**3 - x, x) == pytest.approx(4.0 - 2.0)
    with pytest.raises(ValueError, match="even number"):
        simpson([1, 2], [0, 1])


def test_success_rate_counts_ties_as_success():
    assert success_rate([1.0, 1.1, 0.9, 1.2], 1.1) == 0.5


def test_clip_auc_of_known_curves():
    # always successful up to 1.40: area of the whole interval
    assert clip_auc([1.5, 2.0]) == pytest.approx(0.4)
    # never successful
    assert clip_auc([0.5, 0.99]) == 0.0
    # one edit with CLIP-R 1.2: rate 1 at r = 1.00..1.20 (k = 0..20), 0 after.
    # Simpson, h = 0.01: h/3 * (y0 + y40 + 4*sum(odd k<=19) + 2*sum(even 2..20))
    #                  = 0.01/3 * (1 + 0 + 4*10 + 2*10) = 61/300
    assert clip_auc([1.2]) == pytest.approx(61 / 300)
    # two edits (1.2 and 1.5): the step curve is 1 then 0.5 -> mean of the two cases
    assert clip_auc([1.2, 1.5]) == pytest.approx((61 / 300 + 0.4) / 2)


def test_l1_star_and_clip_i_star_average_the_successful_edits_over_the_sweep():
    # every edit succeeds up to 1.22: the plain mean
    assert swept_mean([0.1, 0.3], [1.3, 1.5]) == pytest.approx(0.2)
    # CLIP-R 1.1 and 1.3: mean 0.2 for r <= 1.10 (k = 0..10), 0.3 above (k = 11..22).
    # Simpson, h = 0.01: h/3 * (0.2 + 0.3 + 4*(5*0.2 + 6*0.3) + 2*(5*0.2 + 5*0.3)) / 0.22
    assert swept_mean([0.1, 0.3], [1.1, 1.3]) == pytest.approx(16.7 / 66)
    # a CLIP-R of exactly 1.13 meets the threshold 1.13 (no float drift in the grid)
    assert swept_mean([0.1, 0.3], [1.13, 1.3]) == pytest.approx(
        0.01 / 3 * (0.2 + 0.3 + 4 * (7 * 0.2 + 4 * 0.3) + 2 * (6 * 0.2 + 4 * 0.3)) / 0.22
    )
    assert swept_mean([0.1, 0.3], [1.1, 1.2]) is None  # nothing succeeds at 1.22
    with pytest.raises(ValueError, match="one CLIP-R per"):
        swept_mean([0.1], [1.1, 1.2])


def test_summary_carries_l1_star_and_clip_i_star():
    from lusd.eval.evaluate import summarize

    per_edit = {
        "a": {"l1": 0.1, "clip_i": 0.9, "clip_r": 1.3},
        "b": {"l1": 0.3, "clip_i": 0.7, "clip_r": 1.5},
        "c": {"l1": 0.5},  # no CLIP-R (no CLIP model for this one): left out
    }
    summary = summarize(per_edit)
    assert summary["l1_star"] == pytest.approx(0.2)
    assert summary["clip_i_star"] == pytest.approx(0.8)
    assert summarize({"a": {"l1": 0.1}})["l1_star"] is None


def test_success_curve_points():
    r, rate = success_curve([1.0, 1.1, 1.3, 1.39])
    assert len(r) == 41 and r[0] == 1.0 and r[-1] == pytest.approx(1.4)
    assert rate[0] == 1.0 and rate[10] == 0.75 and rate[-1] == 0.0


def test_oracle_metrics_on_rendered_scenes():
    from lusd.eval.oracle import oracle_metrics
    from lusd.shapes import world

    red = world.Obj("red", "circle", "large", 0)
    blue = world.Obj("blue", "square", "large", 8)
    before = world.render(world.Scene("white", (red,)))
    after = world.render(world.Scene("white", (red, blue)))
    source = "a red circle on the top left on a white background"
    target = "a red circle on the top left and a blue square on the bottom right"
    m = oracle_metrics(before, after, target, source)
    assert m["oracle_success"] == 1.0 and m["oracle_bg_change"] == 0.0
    assert oracle_metrics(before, before, target, source)["oracle_success"] == 0.0
    # an added object may appear in any free cell (SHAPES_WORLD.md, "add")
    elsewhere = world.render(world.Scene("white", (red, world.Obj("blue", "square", "large", 4))))
    assert oracle_metrics(before, elsewhere, target, source)["oracle_success"] == 1.0
    assert oracle_metrics(before, elsewhere, target)["oracle_success"] == 0.0  # no source: exact
    # a changed object must stay in its cell
    green_moved = world.render(world.Scene("white", (world.Obj("green", "circle", "large", 4),)))
    green = "a green circle on the top left"
    assert oracle_metrics(before, green_moved, green, source)["oracle_success"] == 0.0
    # a far-away background pixel slightly off-white (still classified as background)
    arr = np.asarray(after).copy()
    arr[32, 32] = (210, 240, 240)
    changed = oracle_metrics(before, Image.fromarray(arr), target, source)["oracle_bg_change"]
    assert 0 < changed < 1
    assert oracle_metrics(before, after, "a purple hexagon", source) == {"oracle_bg_change": 0.0}
