"""The shapes world: palette, scene sampling, rendering and captions (SHAPES_WORLD.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 64
SUPERSAMPLE = 4

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 11, "large": 18}
#: Grid cells in reading order; index = 3 * row + column.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


def cell_center(cell: int) -> tuple[float, float]:
    """(x, y) pixel centre of grid cell ``cell`` (0..8)."""
    third = CANVAS / 3
    return (cell % 3 + 0.5) * third, (cell // 3 + 0.5) * third


@dataclass(frozen=True)
class Obj:
    """One object: colour, shape, size name, grid cell and jitter in pixels."""

    color: str
    shape: str
    size: str
    cell: int
    dx: float = 0.0
    dy: float = 0.0

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...] = field(default_factory=tuple)


def sample_scene(
    rng: np.random.Generator, n_objects: int | None = None, jitter: float = 1.0
) -> Scene:
    """A random scene: one background, 1-3 objects in distinct cells."""
    n = int(rng.integers(1, 4)) if n_objects is None else n_objects
    cells = rng.choice(9, size=n, replace=False)
    objs = tuple(
        Obj(
            color=str(rng.choice(list(COLORS))),
            shape=str(rng.choice(SHAPES)),
            size=str(rng.choice(list(SIZES))),
            cell=int(c),
            dx=float(rng.uniform(-jitter, jitter)),
            dy=float(rng.uniform(-jitter, jitter)),
        )
        for c in cells
    )
    return Scene(background=str(rng.choice(list(BACKGROUNDS))), objects=objs)


def _polygon(obj: Obj, scale: int) -> tuple[str, list[tuple[float, float]] | list[float]]:
    cx, cy = cell_center(obj.cell)
    cx, cy = (cx + obj.dx) * scale, (cy + obj.dy) * scale
    half = SIZES[obj.size] * scale / 2
    if obj.shape == "circle":
        return "ellipse", [cx - half, cy - half, cx + half, cy + half]
    if obj.shape == "square":
        return "rect", [cx - half, cy - half, cx + half, cy + half]
    h = SIZES[obj.size] * scale * math.sqrt(3) / 2
    return "poly", [(cx - half, cy + h / 2), (cx + half, cy + h / 2), (cx, cy - h / 2)]


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` at 64x64 RGB (4x supersampled, box-filtered: anti-aliased edges)."""
    big = CANVAS * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        kind, pts = _polygon(obj, SUPERSAMPLE)
        fill = COLORS[obj.color]
        if kind == "ellipse":
            draw.ellipse(pts, fill=fill)
        elif kind == "rect":
            draw.rectangle(pts, fill=fill)
        else:
            draw.polygon(pts, fill=fill)
    return img.resize((CANVAS, CANVAS), Image.Resampling.BOX)


def object_phrase(obj: Obj, size: bool = True, position: bool = True) -> str:
    """``a [size] <color> <shape> [on the <position> | in the center]``."""
    words = ["a"] + ([obj.size] if size else []) + [obj.color, obj.shape]
    if position:
        words.append("in the center" if obj.position == "center" else f"on the {obj.position}")
    return " ".join(words)


def caption(
    scene: Scene,
    rng: np.random.Generator | None = None,
    p_size: float = 0.0,
    p_position: float = 0.0,
    p_background: float = 0.0,
    shuffle: bool = False,
) -> str:
    """Caption of ``scene``; each clause is dropped with its probability (rng needed if > 0)."""

    def keep(p: float) -> bool:
        return p <= 0 or rng is None or rng.random() >= p

    objs = list(scene.objects)
    if shuffle and rng is not None:
        objs = [objs[i] for i in rng.permutation(len(objs))]
    parts = [object_phrase(o, keep(p_size), keep(p_position)) for o in objs]
    text = " and ".join(parts)
    if keep(p_background):
        text += f" on a {scene.background} background"
    return text


def training_caption(scene: Scene, rng: np.random.Generator, p_position: float = 0.4) -> str:
    """Caption with the training-time clause dropout (size, position, background)."""
    return caption(scene, rng, p_size=0.5, p_position=p_position, p_background=0.4, shuffle=True)


def to_array(image: Image.Image) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of a PIL image or array."""
    if isinstance(image, np.ndarray):
        return image.astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
