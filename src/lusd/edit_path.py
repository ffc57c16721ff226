"""The edit path: an :class:`EditRequest` runs on a loaded pipeline and becomes an
:class:`EditRecord`, which owns everything an output carries (one settings schema, the
AI-edit disclosure, optional C2PA) and its atomic save.

``lusd edit``, ``lusd batch`` (local and Ray workers) and the web app only parse their
inputs into a request and call :func:`run_edit`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lusd import __version__
from lusd.config import EditConfig
from lusd.disclosure import EditDisclosure
from lusd.errors import ConfigError, PromptError
from lusd.images import encode_image, save_image
from lusd.inputs import check_seed
from lusd.model_id import ModelIdentity
from lusd.regions import Region

#: The PNG text chunk (JPEG/WebP: EXIF description key) that holds an output's settings.
SETTINGS_KEY = "lusd"
#: Keys of the settings record, in the order written.
SETTINGS_FIELDS = (
    "source_prompt", "target_prompt", "focus", "preset", "seed", "model", "weights_hash",
    "region", "region_box", "crop_box", "config",
)  # fmt: skip
#: Text chunks of earlier batch outputs (``lusd:<field>``), read back by :func:`read_settings`.
_LEGACY_PREFIX = "lusd:"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EditRequest:
    """One edit, fully resolved: what every front end builds and :func:`run_edit` runs.

    ``config`` is complete (preset, model defaults and overrides already applied, e.g. by
    :func:`lusd.config.preset_config`); ``preset`` only names where it came from.
    ``region`` restricts the edit to part of the picture, edited on a crop around it
    unless ``crop`` is False.
    """

    image: Image.Image
    source_prompt: str
    target_prompt: str
    config: EditConfig
    preset: str = "lusd"
    seed: int = 0
    focus: tuple[str, ...] | None = None
    region: Region | None = None
    crop: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.config, EditConfig):
            raise ConfigError("an edit request needs a complete EditConfig")
        if not isinstance(self.target_prompt, str) or not self.target_prompt.strip():
            raise PromptError("the target prompt is empty: say what the edited image should show")
        object.__setattr__(self, "seed", check_seed(self.seed))
        if self.region is not None:
            self.region.check_config(self.config)
            self.region.pixels(self.image.size)  # empty or outside the picture: refused now
        if self.focus is not None:
            object.__setattr__(self, "focus", tuple(self.focus) or None)


@dataclass
class EditRecord:
    """A finished edit: the request, its result, and how outputs describe it."""

    request: EditRequest
    image: Image.Image
    mask: Image.Image
    focus_words: list[str]
    stats: dict[str, Any]
    model: ModelIdentity = field(default_factory=lambda: ModelIdentity("unnamed"))

    @property
    def settings(self) -> dict[str, Any]:
        """The one settings schema written into every output."""
        req = self.request
        values = {
            "source_prompt": req.source_prompt,
            "target_prompt": req.target_prompt,
            "focus": list(self.focus_words),
            "preset": req.preset,
            "seed": req.seed,
            "model": self.model.name,
            "weights_hash": self.model.weights_hash,
            "region": req.region.label if req.region is not None else None,
            "region_box": self.stats.get("region_box"),
            "crop_box": self.stats.get("crop_box"),
            "config": req.config.to_dict(),
        }
        return {key: values[key] for key in SETTINGS_FIELDS}

    @property
    def disclosure(self) -> EditDisclosure:
        req = self.request
        return EditDisclosure(
            model=self.model.name,
            weights_hash=self.model.weights_hash,
            method=req.config.method,
            preset=req.preset,
            source_prompt=req.source_prompt,
            target_prompt=req.target_prompt,
            focus=tuple(self.focus_words),
            seed=req.seed,
            steps=req.config.num_steps,
        )

    def metadata(self) -> dict[str, str]:
        return {SETTINGS_KEY: json.dumps(self.settings), "Software": f"lusd {__version__}"}

    def encode(self, fmt: str = "PNG") -> bytes:
        """The edited image as ``fmt`` bytes with the settings and the disclosure's XMP."""
        return encode_image(self.image, fmt, self.metadata(), self.disclosure.to_xmp())

    def save(self, path: str | os.PathLike, signer: Any = None, source_bytes: bytes = b"") -> Path:
        """Write the edited image atomically; ``signer`` adds signed C2PA credentials
        (``source_bytes``: the input file, recorded as the ingredient)."""
        target = Path(path)
        disclosure = self.disclosure
        finish = None
        if signer is not None:

            def finish(data: bytes, mime: str) -> bytes:
                return signer.sign(data, mime, disclosure, source_bytes, target.name)

        return save_image(
            self.image, target, self.metadata(), xmp=disclosure.to_xmp(), finish=finish
        )


def generator_for(seed: int):
    """The random generator of an edit: the same seed gives the same pixels everywhere."""
    import torch

    return torch.Generator("cpu").manual_seed(check_seed(seed))


def run_edit(
    pipe: Any,
    request: EditRequest,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EditRecord:
    """Run ``request`` on a loaded pipeline (anything with the LUSDPipeline call contract).

    ``progress(step, total)`` follows the iterations; ``should_stop()`` True ends the edit
    after its current iteration. Safe to call from several threads on one pipeline.
    """
    out = pipe(
        request.image,
        request.source_prompt,
        request.target_prompt,
        focus=list(request.focus) if request.focus else None,
        config=request.config,
        generator=generator_for(request.seed),
        callback=progress,
        should_stop=should_stop,
        region=request.region,
        crop=request.crop,
    )
    stats = dict(out.stats)
    stats["preset"] = request.preset
    identity = getattr(pipe, "identity", None) or ModelIdentity("unnamed")
    return EditRecord(request, out.images[0], out.masks[0], list(out.focus_words), stats, identity)


def read_settings(texts: dict[str, Any]) -> dict[str, Any] | None:
    """The settings record from an output's text chunks (``Image.text`` or the JPEG/WebP
    EXIF description's JSON); also the separate ``lusd:*`` chunks of earlier batch outputs."""
    if SETTINGS_KEY in texts:
        try:
            values = json.loads(texts[SETTINGS_KEY])
        except (TypeError, ValueError):
            return None
        return values if isinstance(values, dict) else None
    legacy = {
        key[len(_LEGACY_PREFIX) :]: value
        for key, value in texts.items()
        if key.startswith(_LEGACY_PREFIX)
    }
    if "target_prompt" not in legacy:
        return None
    if "seed" in legacy:
        with contextlib.suppress(ValueError):
            legacy["seed"] = int(legacy["seed"])
    return legacy
