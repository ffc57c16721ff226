"""Read XMP back with exiv2 (pyexiv2), a different library than the writer (Pillow)."""

from __future__ import annotations

from pathlib import Path

import pyexiv2


def exiv2_xmp(path: Path) -> dict:
    """The XMP of ``path`` as exiv2 reads it (a different library than the writer, Pillow)."""
    with pyexiv2.ImageData(path.read_bytes()) as image:
        return image.read_xmp()
