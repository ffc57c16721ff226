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
    "region", "region_box", "crop_box", "candidates", "judge_score", "config",
)  # fmt: skip
#: The most candidates one edit may ask for (each costs about one edit's UNet work).
MAX_CANDIDATES = 16
#: Text chunks of earlier batch outputs (``lusd:<field>``), read back by :func:`read_settings`.
_LEGACY_PREFIX = "lusd:"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EditRequest:
    """One edit, fully resolved: what every front end builds and :func:`run_edit` runs.

    ``config`` is complete (preset, model defaults and overrides already applied, e.g. by
    :func:`lusd.config.preset_config`); ``preset`` only names where it came from.
    ``region`` restricts the edit to part of the picture, edited on a crop around it
    unless ``crop`` is False. ``num_candidates`` K > 1 runs the seeds ``seed`` .. ``seed + K - 1``
    together and keeps the one the judge scores best; ``judge`` scores a single
    candidate too (for review flags).
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
    num_candidates: int = 1
    judge: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.config, EditConfig):
            raise ConfigError("an edit request needs a complete EditConfig")
        if not isinstance(self.target_prompt, str) or not self.target_prompt.strip():
            raise PromptError("the target prompt is empty: say what the edited image should show")
        object.__setattr__(self, "seed", check_seed(self.seed))
        check_candidates(self.num_candidates)
        check_seed(self.seed + self.num_candidates - 1)
        if self.region is not None:
            self.region.check_config(self.config)
            self.region.pixels(self.image.size)  # empty or outside the picture: refused now
        if self.focus is not None:
            object.__setattr__(self, "focus", tuple(self.focus) or None)

    @property
    def judged(self) -> bool:
        """Whether the judge scores this edit's candidates (always, with several)."""
        return self.judge or self.num_candidates > 1

    @property
    def seeds(self) -> list[int]:
        """The candidates' seeds."""
        return [self.seed + k for k in range(self.num_candidates)]


def check_candidates(count: Any) -> int:
    """``count`` if it is a whole number of candidates in 1..MAX_CANDIDATES, else ConfigError."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDIDATES:
        raise ConfigError(
            f"candidates must be a whole number from 1 to {MAX_CANDIDATES}, got {count!r}"
        )
    return count


@dataclass
class EditRecord:
    """A finished edit: the request, its result, and how outputs describe it.

    With several candidates this is the one the judge scored best (``seed`` its own);
    ``candidates`` holds every candidate (this one included) in seed order.
    """

    request: EditRequest
    image: Image.Image
    mask: Image.Image
    focus_words: list[str]
    stats: dict[str, Any]
    model: ModelIdentity = field(default_factory=lambda: ModelIdentity("unnamed"))
    seed: int | None = None
    score: float | None = None
    candidates: list[EditRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = self.request.seed

    @property
    def settings(self) -> dict[str, Any]:
        """The one settings schema written into every output."""
        req = self.request
        values = {
            "source_prompt": req.source_prompt,
            "target_prompt": req.target_prompt,
            "focus": list(self.focus_words),
            "preset": req.preset,
            "seed": self.seed,
            "model": self.model.name,
            "weights_hash": self.model.weights_hash,
            "region": req.region.label if req.region is not None else None,
            "region_box": self.stats.get("region_box"),
            "crop_box": self.stats.get("crop_box"),
            "candidates": req.num_candidates,
            "judge_score": self.score,
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
            seed=self.seed,
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
    seeds = request.seeds
    out = pipe(
        request.image,
        request.source_prompt,
        request.target_prompt,
        focus=list(request.focus) if request.focus else None,
        config=request.config,
        generator=[generator_for(s) for s in seeds] if len(seeds) > 1 else generator_for(seeds[0]),
        callback=progress,
        should_stop=should_stop,
        region=request.region,
        crop=request.crop,
        judge=request.judged,
    )
    return _record(pipe, request, out)


def run_edits(
    pipe: Any,
    requests: list[EditRequest],
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[EditRecord]:
    """Run several requests with the same config together (``lusd batch --group``): those
    of the same working size share every UNet pass; each record equals
    :func:`run_edit` of its request."""
    if len(requests) == 1:
        return [run_edit(pipe, requests[0], progress, should_stop)]
    from lusd.edit_batch import EditInputs

    config = requests[0].config
    if any(r.config != config for r in requests):
        raise ConfigError("edits run together must share one config")
    edits = [
        EditInputs(
            r.image,
            r.source_prompt,
            r.target_prompt,
            list(r.focus) if r.focus else None,
            r.region,
            r.crop,
            [generator_for(s) for s in r.seeds],
            r.judged,
        )
        for r in requests
    ]
    outputs = pipe.edit_batch(edits, config, progress, should_stop)
    return [_record(pipe, r, out) for r, out in zip(requests, outputs, strict=True)]


def _record(pipe: Any, request: EditRequest, out: Any) -> EditRecord:
    """The record of a pipeline output: its best candidate, holding every candidate."""
    seeds = request.seeds
    identity = getattr(pipe, "identity", None) or ModelIdentity("unnamed")
    scores = getattr(out, "scores", None) or [None] * len(seeds)
    own = out.stats.get("candidates") or [{}]
    records = [
        EditRecord(
            request,
            image,
            mask,
            list(out.focus_words),
            {**out.stats, **own[k], "preset": request.preset},
            identity,
            seeds[k],
            scores[k],
        )  # fmt: skip
        for k, (image, mask) in enumerate(zip(out.images, out.masks, strict=True))
    ]
    if len(records) == 1:
        return records[0]
    best = max(range(len(records)), key=lambda k: (scores[k], -k))
    records[best].candidates = records
    return records[best]


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
