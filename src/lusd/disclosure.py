"""The AI-edit disclosure in every edited image: what it says, its XMP, reading it back.

Each output carries an XMP packet with the IPTC digital source type
``compositeWithTrainedAlgorithmicMedia`` (an existing picture changed by a trained
model) and the settings of the edit under the ``lusd:`` namespace.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lusd import __version__
from lusd.errors import ImageInputError
from lusd.xmp import build_packet, parse_packet

DIGITAL_SOURCE_TYPE = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)
_IPTC_CODES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: IPTC digital source types that say a trained model made or changed the picture.
AI_SOURCE_TYPES = frozenset(
    _IPTC_CODES + code
    for code in (
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicallyEnhanced",
        "algorithmicMedia",
        "compositeSynthetic",
    )
)
_DST = "Iptc4xmpExt:DigitalSourceType"
#: EditDisclosure field -> XMP property
_PROPERTIES = {
    "model": "lusd:Model",
    "weights_hash": "lusd:WeightsHash",
    "method": "lusd:Method",
    "preset": "lusd:Preset",
    "source_prompt": "lusd:SourcePrompt",
    "target_prompt": "lusd:TargetPrompt",
    "focus": "lusd:FocusWords",
    "seed": "lusd:Seed",
    "steps": "lusd:Steps",
    "version": "lusd:Version",
}


@dataclass(frozen=True)
class EditDisclosure:
    """What an output says about the edit that made it."""

    model: str
    weights_hash: str
    method: str
    preset: str
    source_prompt: str
    target_prompt: str
    focus: tuple[str, ...]
    seed: int
    steps: int
    version: str = __version__
    digital_source_type: str = DIGITAL_SOURCE_TYPE

    def to_xmp(self) -> str:
        """The XMP packet (IPTC digital source type, tool, then the lusd settings)."""
        props: dict[str, str | list[str]] = {
            _DST: self.digital_source_type,
            "xmp:CreatorTool": f"lusd {self.version}",
        }
        for name, prop in _PROPERTIES.items():
            value = getattr(self, name)
            props[prop] = list(value) if isinstance(value, tuple) else str(value)
        return build_packet(props)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["focus"] = list(self.focus)
        return data


def edit_disclosure(
    model: str | os.PathLike | None,
    *,
    method: str,
    preset: str,
    source_prompt: str,
    target_prompt: str,
    focus: list[str] | tuple[str, ...],
    seed: int,
    steps: int,
    weights_hash: str | None = None,
) -> EditDisclosure:
    """The disclosure of one edit; the weights are hashed (cached) unless given."""
    from lusd.model_id import model_name, model_weights_hash

    return EditDisclosure(
        model=model_name(model),
        weights_hash=model_weights_hash(model) if weights_hash is None else weights_hash,
        method=method,
        preset=preset,
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        focus=tuple(focus),
        seed=int(seed),
        steps=int(steps),
    )


GENERATED_SOURCE_TYPE = _IPTC_CODES + "trainedAlgorithmicMedia"


def tool_xmp(lines: list[str], source_type: str = DIGITAL_SOURCE_TYPE) -> str:
    """XMP for an output that is not one edit: ``lusd demo``'s sheet of several edits
    (composite, one ``source -> target`` line each) or ``lusd generate``'s picture
    (``GENERATED_SOURCE_TYPE``, its prompt): the digital source type, the tool, the lines."""
    return build_packet(
        {
            _DST: source_type,
            "xmp:CreatorTool": f"lusd {__version__}",
            "lusd:Description": lines,
        }
    )


@dataclass
class FileDisclosure:
    """What one image file says about itself."""

    path: Path
    format: str
    size: tuple[int, int]
    #: every XMP property found (``prefix:Name``); empty when the file has no XMP
    xmp: dict[str, str | list[str]] = field(default_factory=dict)
    #: lusd's settings, when the XMP has them
    edit: EditDisclosure | None = None
    #: why the XMP could not be read, if it could not
    xmp_error: str = ""

    @property
    def digital_source_type(self) -> str | None:
        value = self.xmp.get(_DST)
        return value if isinstance(value, str) and value else None

    @property
    def discloses_ai(self) -> bool:
        return self.digital_source_type in AI_SOURCE_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "size": list(self.size),
            "discloses_ai_edit": self.discloses_ai,
            "digital_source_type": self.digital_source_type,
            "edit": self.edit.to_dict() if self.edit else None,
            "xmp": self.xmp,
            "xmp_error": self.xmp_error or None,
        }


def read_disclosure(path: str | os.PathLike) -> FileDisclosure:
    """The XMP disclosure of an image file; ImageInputError if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: not found" if not path.exists() else f"{path}: not a file")
    try:
        with Image.open(path) as image:
            fmt, size = image.format or "?", image.size
            packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageInputError(f"{path}: unreadable or truncated image ({error})") from None
    found = FileDisclosure(path, fmt, size)
    if not packet:
        return found
    try:
        found.xmp = parse_packet(packet)
    except ValueError as error:
        found.xmp_error = str(error)
        return found
    found.edit = _edit_from_xmp(found.xmp)
    return found


def _edit_from_xmp(props: dict[str, str | list[str]]) -> EditDisclosure | None:
    if "lusd:Model" not in props:
        return None

    def text(name: str) -> str:
        value = props.get(_PROPERTIES[name], "")
        return value if isinstance(value, str) else ", ".join(value)

    def number(name: str) -> int:
        try:
            return int(text(name))
        except ValueError:
            return -1

    focus = props.get(_PROPERTIES["focus"], [])
    return EditDisclosure(
        model=text("model"),
        weights_hash=text("weights_hash"),
        method=text("method"),
        preset=text("preset"),
        source_prompt=text("source_prompt"),
        target_prompt=text("target_prompt"),
        focus=tuple(focus) if isinstance(focus, list) else tuple(w for w in [focus] if w),
        seed=number("seed"),
        steps=number("steps"),
        version=text("version"),
        digital_source_type=str(props.get(_DST, "")),
    )
