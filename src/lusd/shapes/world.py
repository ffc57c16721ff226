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

#: The words a caption uses to describe an object, by kind.
WORD_KINDS: dict[str, frozenset[str]] = {
    "size": frozenset(SIZES),
    "color": frozenset(COLORS),
    "shape": frozenset(SHAPES),
    "position": frozenset(w for p in POSITIONS for w in p.split()),
}


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


def _draw(draw: ImageDraw.ImageDraw, obj: Obj, fill) -> None:
    kind, pts = _polygon(obj, SUPERSAMPLE)
    {"ellipse": draw.ellipse, "rect": draw.rectangle, "poly": draw.polygon}[kind](pts, fill=fill)


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` at 64x64 RGB (4x supersampled, box-filtered: anti-aliased edges)."""
    big = CANVAS * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj, COLORS[obj.color])
    return img.resize((CANVAS, CANVAS), Image.Resampling.BOX)


def _phrase_words(obj: Obj, size: bool = True, position: bool = True) -> list[tuple[str, bool]]:
    """Words of ``object_phrase``, each with whether it describes the object itself."""
    words = (
        [("a", False)]
        + ([(obj.size, True)] if size else [])
        + [(obj.color, True), (obj.shape, True)]
    )
    if position:
        if obj.position == "center":
            words += [("in", False), ("the", False), ("center", True)]
        else:
            words += [("on", False), ("the", False)] + [(w, True) for w in obj.position.split()]
    return words


def object_phrase(obj: Obj, size: bool = True, position: bool = True) -> str:
    """``a [size] <color> <shape> [on the <position> | in the center]``."""
    return words_text(_phrase_words(obj, size, position))


def caption_words(
    scene: Scene,
    rng: np.random.Generator | None = None,
    p_size: float = 0.0,
    p_position: float = 0.0,
    p_background: float = 0.0,
    shuffle: bool = False,
) -> list[tuple[str, int]]:
    """``caption``'s words, each with the index in ``scene.objects`` of the object it
    describes (its size, colour, shape and position words), or -1."""

    def keep(p: float) -> bool:
        return p <= 0 or rng is None or rng.random() >= p

    order = list(range(len(scene.objects)))
    if shuffle and rng is not None:
        order = [order[i] for i in rng.permutation(len(order))]
    words: list[tuple[str, int]] = []
    for k, i in enumerate(order):
        if k:
            words.append(("and", -1))
        phrase = _phrase_words(scene.objects[i], keep(p_size), keep(p_position))
        words += [(w, i if own else -1) for w, own in phrase]
    if keep(p_background):
        words += [("on", -1), ("a", -1), (scene.background, -1), ("background", -1)]
    return words


def words_text(words: list[tuple[str, int]]) -> str:
    """The text of ``caption_words``' output."""
    return " ".join(w for w, _ in words)


def caption(
    scene: Scene,
    rng: np.random.Generator | None = None,
    p_size: float = 0.0,
    p_position: float = 0.0,
    p_background: float = 0.0,
    shuffle: bool = False,
) -> str:
    """Caption of ``scene``; each clause is dropped with its probability (rng needed if > 0)."""
    return words_text(caption_words(scene, rng, p_size, p_position, p_background, shuffle))


def training_caption_words(
    scene: Scene, rng: np.random.Generator, p_position: float = 0.4
) -> list[tuple[str, int]]:
    """Words of a caption with the training-time clause dropout (size, position, background)."""
    return caption_words(
        scene, rng, p_size=0.5, p_position=p_position, p_background=0.4, shuffle=True
    )


def training_caption(scene: Scene, rng: np.random.Generator, p_position: float = 0.4) -> str:
    """Caption with the training-time clause dropout (size, position, background)."""
    return words_text(training_caption_words(scene, rng, p_position))


def object_mask(obj: Obj) -> np.ndarray:
    """(64, 64) float coverage of ``obj`` in [0, 1], anti-aliased exactly as ``render`` draws it."""
    big = CANVAS * SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    _draw(ImageDraw.Draw(img), obj, 255)
    return np.asarray(img.resize((CANVAS, CANVAS), Image.Resampling.BOX), dtype=np.float32) / 255


def to_array(image: Image.Image) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of a PIL image or array."""
    if isinstance(image, np.ndarray):
        return image.astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
