"""The web app's editing logic, free of gradio: settings, strength mapping, one edit, records."""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lusd.config import EditConfig, preset_config
from lusd.errors import ImageInputError, LUSDError, PromptError
from lusd.licensing import ModelLicense, lookup, require_commercial
from lusd.regions import Region

log = logging.getLogger(__name__)

#: Strength slider value -> (factor on the number of steps, factor on the scale schedule).
#: Both factors multiply the model's own defaults (``pipe.default_config``); 3 is the default.
STRENGTHS: dict[int, tuple[float, float]] = {
    1: (0.5, 0.6),
    2: (0.75, 0.8),
    3: (1.0, 1.0),
    4: (1.25, 1.25),
    5: (1.5, 1.5),
}
DEFAULT_STRENGTH = 3
#: The most variants one edit in the browser may ask for (each costs about one edit).
MAX_VARIANTS = 4
#: "Try again" draws seeds below this (any seed up to 2**63 - 1 may be typed)
_NEW_SEED_LIMIT = 2**31 - 1
#: Overlay colour of the mask view (RGB) and its strongest opacity.
_MASK_TINT = np.array([255, 40, 200], dtype=np.float32)
_MASK_ALPHA = 0.6
_BYTES_PER = {"GB": 1024**3, "MB": 1024**2, "KB": 1024, "bytes": 1}


@dataclass(frozen=True)
class AppSettings:
    """Limits and defaults of one served app."""

    max_file_size: str = "10mb"
    max_pixels: int = 16_000_000
    concurrency: int = 1
    max_queue: int = 8
    max_prompt_chars: int = 300
    history_size: int = 12
    #: Results older than this (seconds) are deleted from the temp folder at the next edit.
    keep_results_s: float = 24 * 3600
    #: EditConfig overrides applied to the model's defaults before the strength mapping.
    base_overrides: dict[str, Any] = field(default_factory=dict)
    #: the model's name for messages (outputs name it as the loaded pipeline's identity)
    model_name: str = "shapes"
    examples_dir: Path | None = None
    #: the model's licence (None: not read, so commercial use is unknown)
    model_license: ModelLicense | None = None
    #: refuse to serve a model whose licence forbids commercial use
    require_commercial: bool = False

    def __post_init__(self) -> None:
        from lusd.inputs import check_int, check_number, parse_size

        parse_size(self.max_file_size, "--max-file-size")
        check_int(self.max_pixels, "--max-pixels", 1)
        check_int(self.concurrency, "--concurrency", 1, 64)
        check_int(self.max_queue, "--max-queue", 1, 10_000)
        check_int(self.max_prompt_chars, "max_prompt_chars", 1, 100_000)
        check_int(self.history_size, "history_size", 1, 1000)
        check_number(self.keep_results_s, "keep_results_s")

    @property
    def max_file_bytes(self) -> int:
        """The upload size limit in bytes."""
        from lusd.inputs import parse_size

        return parse_size(self.max_file_size, "--max-file-size")


@dataclass(frozen=True)
class SessionResult:
    """One finished edit of the session (files live in the app's temp folder)."""

    id: str
    input_path: str
    result_path: str
    mask_path: str
    overlay_path: str
    source_prompt: str
    target_prompt: str
    focus_words: tuple[str, ...]
    seed: int
    strength: int
    seconds: float
    iterations: int
    #: the judge's score (0-1, higher is better) when the edit made several variants
    score: float | None = None
    #: every variant of the edit, best first (this one among them); empty for one variant
    variants: tuple[SessionResult, ...] = ()

    @property
    def caption(self) -> str:
        score = "" if self.score is None else f" · score {self.score:.2f}"
        return f"seed {self.seed} · strength {self.strength}{score}: {self.target_prompt}"

    def summary(self) -> str:
        focus = ", ".join(self.focus_words) or "none"
        best = ""
        if self.variants:
            best = (
                f" Best of {len(self.variants)} variants by the model's own judge "
                f"(score {self.score:.2f}); the others are in the gallery."
            )
        return (
            f"Done in {self.seconds:.1f} s ({self.iterations} steps). "
            f"Focus words: {focus}. Seed {self.seed}, strength {self.strength}.{best}"
        )


def strength_config(base: EditConfig, strength: int) -> EditConfig:
    """The config for a strength value: steps and scale schedule scaled from ``base``.

    ``num_steps`` is multiplied by the first factor of :data:`STRENGTHS` (at least 1),
    ``scale_high`` and ``scale_low`` by the second; everything else stays as in ``base``.
    """
    if strength not in STRENGTHS:
        raise LUSDError(f"strength must be one of {min(STRENGTHS)}..{max(STRENGTHS)}")
    steps_factor, scale_factor = STRENGTHS[strength]
    return base.replace(
        num_steps=max(1, round(base.num_steps * steps_factor)),
        scale_high=base.scale_high * scale_factor,
        scale_low=base.scale_low * scale_factor,
    )


def parse_focus(text: str | None) -> list[str] | None:
    """Focus words typed by the user ("party, hat" or "party hat"); None means automatic."""
    words = [w for w in re.split(r"[,;\s]+", text or "") if w]
    return words or None


def painted_region(painted: Any, box_text: str | None = None) -> Region | None:
    """The region the user gave: strokes painted on the picture (an ImageEditor value:
    layers with alpha), else a typed box ``x0,y0,x1,y1``; None (nothing painted, no box)
    means automatic."""
    box_text = (box_text or "").strip()
    strokes = None
    for layer in painted.get("layers") or [] if isinstance(painted, dict) else []:
        pixels = np.asarray(layer)
        if pixels.ndim == 3 and pixels.shape[2] == 4 and pixels[..., 3].any():
            drawn = pixels[..., 3] > 0
            strokes = drawn if strokes is None else strokes | drawn
    if strokes is not None and box_text:
        raise ImageInputError("Paint the area or type a box, not both.")
    if strokes is not None:
        return Region.from_mask(Image.fromarray(np.uint8(strokes) * 255), name="painted")
    return Region.from_box(box_text) if box_text else None


def mask_overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """``image`` with the edited area (``mask``, mode L) tinted, for the mask view."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    weight = np.asarray(mask.convert("L").resize(image.size), dtype=np.float32)[..., None] / 255
    alpha = weight * _MASK_ALPHA
    mixed = rgb * (1 - alpha) + _MASK_TINT * alpha
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8))


def new_seed() -> int:
    return int(np.random.default_rng().integers(0, _NEW_SEED_LIMIT))


def plain_message(error: LUSDError, path: str | None = None) -> str:
    """One line for the page: no server paths, first letter capitalised."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if path:
        text = text.replace(str(path), "the picture")
    return text[:1].upper() + text[1:]


def too_large_message(settings: AppSettings) -> str:
    """The page's one line for an upload over ``--max-file-size``."""
    size = settings.max_file_bytes
    unit = next((u for u in ("GB", "MB", "KB") if size >= _BYTES_PER[u]), "bytes")
    limit = f"{size / _BYTES_PER[unit]:.3g} {unit}"
    return f"This file is larger than the app accepts ({limit}). Use a smaller picture."


def check_file_size(path: str | Path, settings: AppSettings) -> None:
    """ImageInputError if the file at ``path`` is over the upload limit (read before decoding)."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return  # missing or unreadable: the image loader says so in its own words
    if size > settings.max_file_bytes:
        raise ImageInputError(too_large_message(settings))


class Editor:
    """Runs edits for the app with one loaded pipeline and writes results to ``workdir``."""

    def __init__(self, pipe: Any, settings: AppSettings, workdir: Path) -> None:
        if settings.require_commercial:
            unread = lookup("unknown", "licence not read")
            require_commercial(settings.model_license or unread, settings.model_name)
        self.pipe = pipe
        self.settings = settings
        self.workdir = Path(workdir)
        base = getattr(pipe, "default_config", None) or EditConfig()
        self.base_config = preset_config("lusd", base=base, **settings.base_overrides)

    def config_for(self, strength: int) -> EditConfig:
        return strength_config(self.base_config, strength)

    def focus_preview(self, source_prompt: str, target_prompt: str) -> str:
        """The automatic focus words for the prompts, comma separated ("" if none)."""
        if not (target_prompt or "").strip():
            return ""
        try:
            from lusd.focus import focus_words

            return ", ".join(focus_words(source_prompt or "", target_prompt))
        except Exception:  # a preview must never break typing
            log.warning("focus preview failed", exc_info=True)
            return ""

    def check_focus(self, target_prompt: str, focus: list[str] | None) -> None:
        """Raise PromptError when a focus word is not in the target prompt."""
        tokenizer = getattr(self.pipe, "tokenizer", None)
        if not focus or tokenizer is None:
            return
        from lusd.focus import token_positions

        token_positions(tokenizer, target_prompt, focus)

    def check_inputs(self, image_path: str | None, source: str, target: str) -> None:
        """Plain-words errors for what the user can fix before an edit starts."""
        if not image_path:
            raise ImageInputError("Upload a picture first, or pick one of the examples.")
        if not (target or "").strip():
            raise PromptError("Describe what the picture should become (the target prompt).")
        limit = self.settings.max_prompt_chars
        for name, text in (("description", source), ("target prompt", target)):
            if len(text or "") > limit:
                raise PromptError(f"The {name} is too long: keep it under {limit} characters.")

    def load(self, image_path: str) -> Image.Image:
        from lusd.images import load_image

        check_file_size(image_path, self.settings)
        try:
            return load_image(image_path, max_pixels=self.settings.max_pixels)
        except ImageInputError as error:
            raise ImageInputError(plain_message(error, image_path)) from None

    def run(
        self,
        image_path: str | None,
        source_prompt: str,
        target_prompt: str,
        focus_text: str,
        strength: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
        region: Region | None = None,
        variants: int = 1,
    ) -> SessionResult:
        """One edit; raises LUSDError (one plain line) for anything the user can fix.

        ``variants`` > 1 runs that many seeds together and returns the one the judge scores
        best, holding every variant (best first) in ``variants``."""
        from lusd.edit_path import EditRequest, run_edit
        from lusd.inputs import check_int, check_seed

        source, target = (source_prompt or "").strip(), (target_prompt or "").strip()
        self.check_inputs(image_path, source, target)
        strength = check_int(strength, "the strength", min(STRENGTHS), max(STRENGTHS))
        seed = check_seed(seed, "the seed")
        variants = check_int(variants, "the number of variants", 1, MAX_VARIANTS)
        image = self.load(str(image_path))
        focus = parse_focus(focus_text)
        self.check_focus(target, focus)
        request = EditRequest(
            image,
            source,
            target,
            self.config_for(strength),
            seed=seed,
            focus=tuple(focus) if focus else None,
            region=region,
            num_candidates=variants,
        )
        record = run_edit(self.pipe, request, progress=progress)
        if not record.candidates:
            return self._save(record, strength)
        ranked = sorted(record.candidates, key=lambda c: -c.score)
        saved = [self._save(candidate, strength) for candidate in ranked]
        return dataclasses.replace(saved[0], variants=tuple(saved))

    def prune(self) -> None:
        """Delete result folders older than ``settings.keep_results_s`` (bounded disk use)."""
        cutoff = time.time() - self.settings.keep_results_s
        for folder in (self.workdir / "results").glob("*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def _save(self, record: Any, strength: int) -> SessionResult:
        from lusd.images import save_image

        self.prune()
        record_id = uuid.uuid4().hex[:12]
        folder = self.workdir / "results" / record_id
        request = record.request
        mask_l = record.mask.convert("L").resize(record.image.size)
        xmp = record.disclosure.to_xmp()
        paths = {
            "input": save_image(request.image, folder / "input.png"),
            "result": record.save(folder / f"lusd-edit-{record.seed}.png"),
            "mask": save_image(mask_l, folder / "mask.png"),
            "overlay": save_image(
                mask_overlay(record.image, mask_l), folder / "overlay.png", xmp=xmp
            ),
        }
        return SessionResult(
            id=record_id,
            input_path=str(paths["input"]),
            result_path=str(paths["result"]),
            mask_path=str(paths["mask"]),
            overlay_path=str(paths["overlay"]),
            source_prompt=request.source_prompt,
            target_prompt=request.target_prompt,
            focus_words=tuple(record.focus_words),
            seed=record.seed,
            strength=strength,
            seconds=float(record.stats.get("seconds", 0.0)),
            iterations=int(record.stats.get("iterations", request.config.num_steps)),
            score=record.score,
        )


def list_examples(folder: Path | None) -> list[tuple[str, str, str]]:
    """(image path, source prompt, target prompt) for each PNG in ``folder``.

    Prompts come from the PNG's text chunks (``lusd:source_prompt`` or ``caption``, and
    ``lusd:target_prompt``) or from a ``<name>.txt`` beside it (first line source, second
    line target). A missing or empty folder gives no examples.
    """
    if folder is None or not Path(folder).is_dir():
        return []
    rows = []
    for path in sorted(Path(folder).glob("*.png")):
        source, target = _example_prompts(path)
        rows.append((str(path), source, target))
    return rows


def _example_prompts(path: Path) -> tuple[str, str]:
    texts: dict[str, str] = {}
    try:
        with Image.open(path) as im:
            texts = {k: str(v) for k, v in getattr(im, "text", {}).items()}
    except Exception:
        log.warning("cannot read example %s", path)
    source = texts.get("lusd:source_prompt") or texts.get("caption") or ""
    target = texts.get("lusd:target_prompt", "")
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file():
        lines = [line.strip() for line in sidecar.read_text().splitlines()]
        source = lines[0] if lines else source
        target = lines[1] if len(lines) > 1 else target
    return source, target
