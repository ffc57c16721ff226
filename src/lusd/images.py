"""Image input/output: safe loading, fitting to the model's size, paste-back, atomic saving."""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from lusd.errors import ImageInputError
from lusd.files import atomic_write

#: Default limit on input pixels (about 50 megapixels); configurable per call.
DEFAULT_MAX_PIXELS = 50_000_000
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_EXIF_IMAGE_DESCRIPTION = 0x010E
_PNG_XMP_KEY = "XML:com.adobe.xmp"
MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def load_image(source: Any, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "") -> Image.Image:
    """Return ``source`` (path, encoded bytes, PIL image or numpy array) as an RGB image.

    Honours EXIF orientation; flattens alpha onto white; converts palette, grey,
    16-bit and CMYK images; the first frame of an animation. ``name`` names bytes in
    errors. Raises ImageInputError with a one-line reason.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    elif isinstance(source, (str, os.PathLike)):
        image = _open_path(Path(source), max_pixels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _open(io.BytesIO(bytes(source)), name or "image", max_pixels)
    else:
        raise ImageInputError(
            f"unsupported image type {type(source).__name__}: use a path, bytes, PIL or numpy"
        )
    _check_pixels(image.size, max_pixels, name or "image")
    return to_rgb(ImageOps.exif_transpose(image))


def check_image_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Read only the header of ``path``: ImageInputError unless it is an image within the limit.

    Cheap enough to run on every upload or manifest row before anything is decoded.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image.size, max_pixels, str(path))
    except Exception as error:
        raise _reason(error, str(path)) from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageInputError(f"image not found: {path}")
    if not path.is_file():
        raise ImageInputError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ImageInputError(f"{path}: empty file (0 bytes), not an image")


def _open_path(path: Path, max_pixels: int) -> Image.Image:
    _check_file(path)
    return _open(path, str(path), max_pixels)


def _open(file: Any, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
            _check_pixels(image.size, max_pixels, name)
            image.load()
    except Exception as error:
        raise _reason(error, name) from None
    return image


def _reason(error: Exception, name: str) -> Exception:
    """The one-line ImageInputError for whatever Pillow raised while reading ``name``."""
    if isinstance(error, ImageInputError):
        return error
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return _bomb(error, name)
    if isinstance(error, UnidentifiedImageError):
        return ImageInputError(f"{name}: not an image (or a format Pillow cannot read)")
    if isinstance(error, MemoryError):
        return ImageInputError(f"{name}: too large to decode in memory; downscale it")
    detail = " ".join(str(error).split()) or type(error).__name__
    return ImageInputError(f"{name}: unreadable or truncated image ({detail})")


def _bomb(error: Exception, name: str) -> ImageInputError:
    """Pillow's decompression-bomb guard fired: a hard cap, whatever the pixel limit says."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return ImageInputError(
        f"{name}: {pixels}, over Pillow's decompression-bomb limit of "
        f"{Image.MAX_IMAGE_PIXELS:,} pixels (a hard cap); downscale it"
    )


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageInputError(f"{name}: empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageInputError(
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale it or raise the pixel limit"
        )


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(f"array of shape {array.shape} is not an HxW, HxWx3 or HxWx4 image")
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is flattened onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def fit_size(width: int, height: int, long_side: int, multiple: int) -> tuple[int, int]:
    """Aspect-keeping size: longer side ``long_side``, both sides multiples of ``multiple``."""
    scale = long_side / max(width, height)
    fitted_w = max(multiple, round(width * scale / multiple) * multiple)
    fitted_h = max(multiple, round(height * scale / multiple) * multiple)
    return fitted_w, fitted_h


def soft_mask(
    mask: np.ndarray, size: tuple[int, int], threshold: float, dilate: float, feather: float
) -> np.ndarray:
    """Paste-back weights in [0, 1] at ``size`` (w, h): threshold, dilate, feather.

    ``dilate`` and ``feather`` are fractions of the longer image side.
    """
    long_side = max(size)
    mask_image = Image.fromarray(np.uint8(np.clip(mask, 0, 1) * 255)).resize(size, Image.BICUBIC)
    binary = mask_image.point(lambda v: 255 if v >= threshold * 255 else 0)
    radius = int(round(dilate * long_side))
    if radius > 0:
        binary = binary.filter(ImageFilter.MaxFilter(2 * radius + 1))
    blur = feather * long_side
    if blur > 0:
        binary = binary.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(binary, dtype=np.float32) / 255.0


def paste_back(original: Image.Image, edited: Image.Image, weights: np.ndarray) -> Image.Image:
    """Blend ``edited`` (any size) into ``original`` with ``weights`` at the original's size.

    Pixels whose weight is 0 are copied from ``original`` bit for bit.
    """
    base = np.asarray(original.convert("RGB"), dtype=np.float32)
    top = np.asarray(edited.convert("RGB").resize(original.size, Image.LANCZOS), dtype=np.float32)
    alpha = weights[..., None]
    blended = np.clip(base * (1 - alpha) + top * alpha + 0.5, 0, 255).astype(np.uint8)
    result = np.where(alpha > 0, blended, np.asarray(original.convert("RGB")))
    return Image.fromarray(result)


def output_format(path: str | os.PathLike) -> str:
    """Pillow format for an output path; ImageInputError for an unsupported extension."""
    target = Path(path)
    fmt = _SAVE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ImageInputError(
            f"{target}: unsupported output extension; use {', '.join(sorted(_SAVE_FORMATS))}"
        )
    return fmt


def encode_image(
    image: Image.Image, fmt: str, metadata: dict[str, Any] | None = None, xmp: str | None = None
) -> bytes:
    """``image`` as ``fmt`` (PNG, JPEG, WEBP) bytes with ``metadata`` and an XMP packet.

    PNG: one text chunk per key, XMP in the standard ``XML:com.adobe.xmp`` iTXt chunk.
    JPEG/WebP: JSON in the EXIF ImageDescription, XMP through Pillow's ``xmp`` option.
    """
    texts = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    options: dict[str, Any] = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if xmp:
            info.add_itxt(_PNG_XMP_KEY, xmp, zip=False)  # XMP spec: uncompressed iTXt
        for key, value in texts.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    else:
        if texts:
            exif = Image.Exif()
            exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(texts)
            options["exif"] = exif
        if xmp:
            options["xmp"] = xmp.encode("utf-8")
    if fmt == "JPEG":
        options["quality"] = 95
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


#: Turns encoded bytes and their MIME type into the bytes to write (e.g. C2PA signing).
Finisher = Callable[[bytes, str], bytes]


def save_image(
    image: Image.Image,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    xmp: str | None = None,
    finish: Finisher | None = None,
) -> Path:
    """Write ``image`` atomically (temp file + rename) with ``metadata`` and ``xmp`` in it.

    ``finish`` (if given) gets the encoded bytes and MIME type and returns what is written.
    """
    target = Path(path)
    fmt = output_format(target)
    data = encode_image(image, fmt, metadata, xmp)
    if finish is not None:
        data = finish(data, MIME_TYPES[fmt])
    atomic_write(target, data)
    return target
