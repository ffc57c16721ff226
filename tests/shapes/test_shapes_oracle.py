"""The oracle agrees with the renderer and survives hard cases."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lusd.errors import PromptError
from lusd.shapes.oracle import background, describe, detect, matches, parse_caption, scene_matches
from lusd.shapes.world import COLORS, SHAPES, Obj, Scene, caption, render, sample_scene


def test_agrees_with_renderer_on_2000_scenes():
    rng = np.random.default_rng(12345)
    scenes = [sample_scene(rng) for _ in range(2000)]
    agree = sum(scene_matches(render(s), s) for s in scenes)
    assert agree / len(scenes) >= 0.99


def test_full_caption_matches_and_wrong_ones_do_not():
    s = Scene("gray", (Obj("purple", "triangle", "small", 0), Obj("orange", "circle", "large", 8)))
    img = render(s)
    assert matches(img, caption(s))
    assert matches(img, "a purple triangle and an orange circle")  # order and clauses free
    assert not matches(img, "a purple triangle")  # exact: the circle is extra
    assert matches(img, "a purple triangle", exact=False)
    assert not matches(img, "a purple square and an orange circle")
    assert not matches(img, caption(s).replace("gray", "white"))
    assert not matches(img, "a small purple triangle on the top right and an orange circle")


@pytest.mark.parametrize("bg", ["white", "gray", "black"])
@pytest.mark.parametrize("color", list(COLORS))
def test_every_small_shape_on_every_background(bg, color):
    for shape in SHAPES:
        for cell in (0, 4, 8):
            s = Scene(bg, (Obj(color, shape, "small", cell, 1.0, -1.0),))
            assert scene_matches(render(s), s), (bg, color, shape, cell)


def test_similar_colours_side_by_side():
    s = Scene(
        "black",
        (
            Obj("orange", "square", "large", 3),
            Obj("yellow", "square", "large", 4),
            Obj("red", "square", "large", 5),
        ),
    )
    assert scene_matches(render(s), s)


def test_touching_antialiased_objects_stay_apart():
    """Two large squares jittered towards each other share an anti-aliased seam."""
    base = render(Scene("white", (Obj("red", "square", "large", 3),)))
    arr = np.asarray(base).copy()
    arr[23:41, 20:38] = COLORS["orange"]  # red spans x 1.7-19.7, y 23-41: they touch
    arr[23:41, 19] = (232, 85, 35)  # a blended red/orange seam column
    found = detect(Image.fromarray(arr))
    assert sorted(d.color for d in found) == ["orange", "red"]


def test_noise_and_unknown_colours():
    s = Scene("white", (Obj("green", "circle", "large", 4), Obj("blue", "triangle", "large", 1)))
    arr = np.asarray(render(s)).astype(float)
    noisy = np.clip(arr + np.random.default_rng(0).normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    assert scene_matches(Image.fromarray(noisy), s)
    blank = Image.new("RGB", (64, 64), (100, 200, 250))  # no palette colour at all
    assert detect(blank) == [] and background(blank) is None


def test_larger_images_are_read_at_64():
    s = Scene("black", (Obj("yellow", "circle", "large", 6),))
    assert scene_matches(render(s).resize((256, 256), Image.Resampling.BICUBIC), s)


def test_parse_caption_and_describe():
    objs, bg = parse_caption(
        "a large red circle on the top left and a blue square on a gray background"
    )
    assert bg == "gray" and [(o.color, o.shape, o.size, o.cell) for o in objs] == [
        ("red", "circle", "large", 0),
        ("blue", "square", None, None),
    ]
    with pytest.raises(PromptError):
        parse_caption("a cat wearing a hat")
    s = Scene("white", (Obj("red", "square", "large", 4),))
    assert describe(render(s)) == "a large red square in the center on a white background"
