"""Mask localisation: the LUSD mask's concentration on the edited object (oracle-judged)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from lusd.eval.oracle import oracle_metrics
from lusd.shapes.mask_metrics import cell_ratio, mask_localisation, summarize_localisation
from lusd.shapes.world import Obj, Scene, render

SOURCE = Scene("white", (Obj("red", "circle", "large", 0), Obj("blue", "square", "large", 8)))
SOURCE_PROMPT = "a red circle and a blue square on a white background"


def _mask(cells: dict[int, float], base: float = 0.0, size: int = 64) -> Image.Image:
    m = np.full((size, size), base)
    for cell, value in cells.items():
        row, col = divmod(cell, 3)
        m[row * size // 3 : (row + 1) * size // 3, col * size // 3 : (col + 1) * size // 3] = value
    return Image.fromarray((255 * m).astype(np.uint8))


def test_cell_ratio_of_uniform_and_concentrated_masks():
    assert cell_ratio(np.ones((64, 64)), 4) == pytest.approx(1.0)
    peaked = np.full((64, 64), 0.1)
    peaked[21:42, 21:42] = 0.5
    assert cell_ratio(peaked, 4) == pytest.approx(5.0)
    assert cell_ratio(np.zeros((64, 64)), 4) != cell_ratio(np.zeros((64, 64)), 4)  # nan


@pytest.mark.parametrize(
    "target, changed_cell",
    [
        ("a red circle and a green square on a white background", 8),  # colour of the 2nd
        ("a red triangle and a blue square on a white background", 0),  # shape of the 1st
    ],
)
def test_ratio_is_read_in_the_changed_objects_cell(target, changed_cell):
    image = render(SOURCE)
    other = 0 if changed_cell == 8 else 8
    on_object = mask_localisation(
        image, image, _mask({changed_cell: 1.0}, 0.1), SOURCE_PROMPT, target
    )
    on_other = mask_localisation(image, image, _mask({other: 1.0}, 0.1), SOURCE_PROMPT, target)
    assert on_object["mask_ratio"] > 5
    assert on_other["mask_ratio"] < 1


def test_add_share_is_the_mass_on_the_object_that_appeared():
    image = render(SOURCE)
    edited = render(Scene("white", (*SOURCE.objects, Obj("green", "triangle", "large", 4))))
    target = "a red circle and a blue square and a green triangle on a white background"
    on_new = mask_localisation(image, edited, _mask({4: 1.0}), SOURCE_PROMPT, target)
    uniform = mask_localisation(image, edited, _mask({}, 1.0), SOURCE_PROMPT, target)
    assert on_new["mask_add_share"] > 0.5 > 5 * on_new["mask_add_area"]
    assert uniform["mask_add_share"] == pytest.approx(uniform["mask_add_area"], rel=0.05)
    # nothing appeared: no share to report
    assert mask_localisation(image, image, _mask({4: 1.0}), SOURCE_PROMPT, target) == {}


def test_not_a_shapes_caption_or_no_single_change_gives_nothing():
    image = render(SOURCE)
    assert mask_localisation(image, image, _mask({0: 1.0}), "a cat", "a dog") == {}
    both = "a green circle and a red square on a white background"
    assert mask_localisation(image, image, _mask({0: 1.0}), SOURCE_PROMPT, both) == {}


def test_summary_counts_localised_changes_and_add_shares():
    records = [
        {"mask_ratio": 3.0},
        {"mask_ratio": 1.0},
        {"mask_ratio": 2.5},
        {"mask_ratio": math.nan},
        {"mask_add_share": 0.4, "mask_add_area": 0.1},
        {},
    ]
    s = summarize_localisation(records)
    assert s["mask_localised"] == pytest.approx(2 / 3)
    assert s["mask_ratio_median"] == pytest.approx(2.5)
    assert s["mask_ratio_n"] == 3
    assert s["mask_add_share"] == pytest.approx(0.4) and s["mask_add_n"] == 1
    assert summarize_localisation([{}]) == {}


def test_oracle_metrics_report_the_mask_when_given():
    image = render(SOURCE)
    target = "a red circle and a green square on a white background"
    with_mask = oracle_metrics(image, image, target, SOURCE_PROMPT, _mask({8: 1.0}, 0.2))
    assert with_mask["mask_ratio"] > 2
    assert "mask_ratio" not in oracle_metrics(image, image, target, SOURCE_PROMPT)
