"""Regions: where an edit may change the picture, from a mask image or a box.

A region is kept at the picture's own size as a boolean array (True = may change).
A mask image is white where the edit may change (on a transparent layer: anything
painted), any size with the picture's aspect
ratio (within 2%), and is scaled to the picture; a box is ``x0,y0,x1,y1`` in pixels,
or in fractions of the width and height when every value lies in [0, 1].
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from lusd.errors import ConfigError, ImageInputError

_BOX = re.compile(r"\s*[-+0-9.eE]+(\s*,\s*[-+0-9.eE]+){3}\s*")
#: A mask image may differ from the picture's aspect ratio by this much (rounding).
ASPECT_TOLERANCE = 0.02


class RegionError(ImageInputError):
    """A region that cannot be used (unreadable, empty, outside the picture)."""


@dataclass(frozen=True)
class Region:
    """Where an edit may change the picture: a box, or a mask image (``mask`` is greyscale)."""

    box: tuple[float, float, float, float] | None = None
    mask: Image.Image | None = field(default=None, compare=False)
    #: how settings and reports name it: "box:x0,y0,x1,y1" or "mask:<name>@<sha256[:12]>"
    label: str = ""

    @classmethod
    def from_box(cls, text: str | tuple | list) -> Region:
        """``"x0,y0,x1,y1"`` (pixels, or fractions when every value is in [0, 1])."""
        parts = text.split(",") if isinstance(text, str) else list(text)
        try:
            values = tuple(float(v) for v in parts)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 4 or not all(np.isfinite(values)):
            raise RegionError(f"box {_show(text)}: expected four numbers x0,y0,x1,y1")
        x0, y0, x1, y1 = values
        if x1 <= x0 or y1 <= y0:
            raise RegionError(
                f"box {_show(text)}: x1 must exceed x0 and y1 exceed y0 (an empty or inverted box)"
            )
        return cls(box=values, label="box:" + ",".join(f"{v:g}" for v in values))

    @classmethod
    def from_mask(cls, source: Any, name: str = "") -> Region:
        """A mask image: a path, encoded bytes or a PIL image; white (or, on a transparent
        layer, anything painted) = may change."""
        if isinstance(source, Image.Image):
            image, data = source, source.tobytes()
            name = name or "image"
        else:
            path = Path(source) if isinstance(source, str | os.PathLike) else None
            try:
                data = path.read_bytes() if path is not None else bytes(source)
            except OSError as error:
                raise RegionError(f"region {source}: {error.strerror or error}") from None
            name = name or (path.name if path is not None else "mask")
            try:
                with Image.open(io.BytesIO(data)) as opened:
                    opened.load()
                    image = opened.copy()
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                raise RegionError(f"region {name}: not an image Pillow can read") from None
        grey = _greyscale(image)
        digest = hashlib.sha256(data).hexdigest()[:12]
        return cls(mask=grey, label=f"mask:{name}@{digest}")

    @classmethod
    def parse(cls, text: str, base: Path | None = None) -> Region:
        """A path to a mask image (relative to ``base``) or a box ``x0,y0,x1,y1``."""
        text = text.strip()
        if cls.looks_like_box(text):
            return cls.from_box(text)
        path = Path(text).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise RegionError(f"region {text!r}: no such mask file, and not a box x0,y0,x1,y1")
        return cls.from_mask(path)

    @staticmethod
    def looks_like_box(text: str) -> bool:
        """``x0,y0,x1,y1`` rather than a file name."""
        return _BOX.fullmatch(text) is not None

    def pixels(self, size: tuple[int, int]) -> np.ndarray:
        """The region at picture size ``(w, h)``: a boolean (h, w) array, True = may change."""
        width, height = size
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if max(self.box) <= 1:
                x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise RegionError(
                    f"region {self.label} reaches outside the {width}x{height} picture"
                )
            grid = np.zeros((height, width), dtype=bool)
            grid[_clip(y0, height) : _ceil(y1, height), _clip(x0, width) : _ceil(x1, width)] = True
        else:
            mask = self.mask
            aspect, picture = mask.width / mask.height, width / height
            if abs(aspect / picture - 1) > ASPECT_TOLERANCE:
                raise RegionError(
                    f"region {self.label.partition('@')[0]} is {mask.width}x{mask.height} but "
                    f"the picture is {width}x{height}: a mask must have the picture's aspect "
                    "ratio (it is scaled to the picture's size)"
                )
            scaled = mask if mask.size == size else mask.resize(size, Image.BILINEAR)
            grid = np.asarray(scaled) >= 128
        if not grid.any():
            raise RegionError(f"region {self.label}: empty, so nothing may change")
        return grid

    def check_config(self, config: Any) -> None:
        """A region keeps every pixel outside it, which needs the paste-back."""
        if not config.paste_back:
            raise ConfigError(
                "a region keeps every pixel outside it, which needs paste_back: drop --raw "
                "(paste_back=false) or the region"
            )


def region_weights(region: np.ndarray, feather: float) -> np.ndarray:
    """Paste-back weights of a region: 1 inside, falling to 0 at its edge over ``feather``
    (a fraction of the longer side), exactly 0 outside it."""
    height, width = region.shape
    radius = int(round(feather * max(width, height)))
    image = Image.fromarray(np.uint8(region) * 255)
    if radius > 0:
        image = image.filter(ImageFilter.MinFilter(2 * radius + 1))
        image = image.filter(ImageFilter.GaussianBlur(radius / 2))
    return np.where(region, np.asarray(image, dtype=np.float32) / 255.0, 0.0).astype(np.float32)


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region's True pixels, x1 and y1 exclusive."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(
    box: tuple[int, int, int, int], size: tuple[int, int], min_side: int, margin: float
) -> tuple[int, int, int, int] | None:
    """The part of a ``size`` picture to edit for a region with bounding ``box``.

    The box grows by ``margin`` times its longer side on every side, becomes a square
    (the models' training aspect) no smaller than ``min_side`` pixels (so the crop is
    never upscaled), and is moved and clipped into the picture. None when the crop would
    cover the whole picture anyway.
    """
    width, height = size
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    side = max(int(round(side * (1 + 2 * margin))), min_side)
    crop_w, crop_h = min(side, width), min(side, height)
    if crop_w == width and crop_h == height:
        return None
    left = _place((x0 + x1) / 2, crop_w, width)
    top = _place((y0 + y1) / 2, crop_h, height)
    return left, top, left + crop_w, top + crop_h


def _place(centre: float, extent: int, limit: int) -> int:
    return int(min(max(round(centre - extent / 2), 0), limit - extent))


def _greyscale(image: Image.Image) -> Image.Image:
    """A mask as L: strokes on a transparent layer by their opacity (any colour), an opaque
    picture by its luminance (white = may change)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:  # some transparency: the strokes are the region
            return alpha
    if image.mode in ("I", "I;16", "F"):
        return image.convert("F").point(lambda v: v / 257).convert("L")
    return image.convert("L")


def _clip(value: float, limit: int) -> int:
    return int(min(max(np.floor(value), 0), limit))


def _ceil(value: float, limit: int) -> int:
    return int(min(max(np.ceil(value), 0), limit))


def _show(text: Any) -> str:
    return repr(text if isinstance(text, str) else ",".join(str(v) for v in text))


def region_at(allowed: np.ndarray, latent_hw: tuple[int, int]):
    """The region at latent size as a (1, 1, h, w) tensor: the share of each latent cell's
    pixels that may change (a soft edge where the region cuts a cell)."""
    import torch

    height, width = latent_hw
    image = Image.fromarray(np.uint8(allowed) * 255).resize((width, height), Image.BOX)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


def stitch(
    original: Image.Image, edited: Image.Image, mask: Image.Image, box: tuple[int, int, int, int]
) -> tuple[Image.Image, Image.Image]:
    """Put an edited crop and its mask back at ``box`` of the full-size original."""
    full = original.copy()
    full.paste(edited, box[:2])
    full_mask = Image.new("L", original.size, 0)
    full_mask.paste(mask, box[:2])
    return full, full_mask
