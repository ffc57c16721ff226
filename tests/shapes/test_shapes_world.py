"""Renderer and caption units of the shapes world (SHAPES_WORLD.md)."""

from __future__ import annotations

import numpy as np
import pytest

from lusd.shapes.world import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    Obj,
    Scene,
    caption,
    cell_center,
    render,
    sample_scene,
    training_caption,
)


def test_palette_is_the_specified_one():
    assert BACKGROUNDS == {"white": (240, 240, 240), "gray": (128, 128, 128), "black": (25, 25, 25)}
    assert COLORS["red"] == (220, 40, 40) and COLORS["orange"] == (245, 130, 30)
    assert len(COLORS) == 6 and len(POSITIONS) == 9


def test_render_is_64x64_rgb_with_flat_background():
    img = render(Scene("gray", (Obj("red", "square", "large", 4),)))
    arr = np.asarray(img)
    assert img.size == (64, 64) and img.mode == "RGB"
    assert tuple(arr[0, 0]) == (128, 128, 128)
    assert tuple(arr[32, 32]) == (220, 40, 40)


@pytest.mark.parametrize("size,side", [("small", 11), ("large", 18)])
@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_bounding_box_width_matches_size(shape, size, side):
    arr = np.asarray(render(Scene("white", (Obj("blue", shape, size, 4),))), dtype=float)
    covered = np.abs(arr - 240).sum(-1) > 0
    cols = np.nonzero(covered.any(0))[0]
    width = cols.max() - cols.min() + 1
    assert side - 1 <= width <= side + 1
    if shape == "triangle":  # apex up: the top row is narrower than the bottom row
        rows = np.nonzero(covered.any(1))[0]
        assert covered[rows.min()].sum() < covered[rows.max()].sum()


def test_cell_centres_split_the_canvas_in_thirds():
    assert cell_center(0) == pytest.approx((64 / 6, 64 / 6))
    assert cell_center(4) == pytest.approx((32, 32))
    assert cell_center(8) == pytest.approx((64 * 5 / 6, 64 * 5 / 6))


def test_sampled_scenes_are_valid_and_seeded():
    a = [sample_scene(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = sample_scene(rng)
        assert 1 <= len(s.objects) <= 3
        assert len({o.cell for o in s.objects}) == len(s.objects)
        assert all(abs(o.dx) <= 1 and abs(o.dy) <= 1 for o in s.objects)


def test_caption_wording():
    s = Scene("black", (Obj("red", "circle", "small", 3), Obj("blue", "square", "large", 4)))
    assert caption(s) == (
        "a small red circle on the left and a large blue square in the center on a black background"
    )
    rng = np.random.default_rng(0)
    texts = {training_caption(s, rng) for _ in range(200)}
    assert "a red circle and a blue square" in texts or "a blue square and a red circle" in texts
    for t in texts:
        assert "centre" not in t and "circles" not in t and "squares" not in t
