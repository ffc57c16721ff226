"""Manifest parsing and validation: CSV or JSONL rows -> validated edit requests.

Columns: ``image`` (alias ``img_path``), ``target_prompt``, ``source_prompt``
(optional), ``focus`` (optional, words separated by ``;``), ``seed``, ``preset``,
``candidates``, ``id`` (optional output name) and any EditConfig field as a per-row override.
Every row is checked before anything runs; bad rows are collected with their line
numbers instead of stopping at the first one.

Lines at the top that start with ``#`` are comments; ``# lusd: KEY=VALUE[, KEY=VALUE]``
among them sets a batch option for the whole manifest (see :data:`DIRECTIVES`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lusd.config import setting_names
from lusd.errors import ConfigError, ImageInputError, LUSDError
from lusd.inputs import FALSE_WORDS, TRUE_WORDS, check_prompt, check_seed, is_inside
from lusd.regions import Region, RegionError
from lusd.rules import PRESETS

#: Accepted spellings of each known column (first one is canonical).
ALIASES: dict[str, tuple[str, ...]] = {
    "image": ("image", "img_path", "input", "input_image"),
    "target_prompt": ("target_prompt", "target_caption", "target"),
    "source_prompt": ("source_prompt", "source_caption", "source"),
    "focus": ("focus", "focus_words"),
    "seed": ("seed",),
    "preset": ("preset",),
    "candidates": ("candidates",),
    "id": ("id", "name"),
    "edited": ("edited", "output", "output_image"),
    "mask": ("mask",),
    "region": ("region",),
}
_COLUMN_OF = {alias: canon for canon, names in ALIASES.items() for alias in names}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Batch options a manifest's header may set (``# lusd: require_commercial=true``).
DIRECTIVES: dict[str, str] = {
    "require_commercial": "refuse a model whose licence forbids commercial use (true/false)",
    "candidates": "candidates per row, the judge keeps the best (1-16; a row's column wins)",
}
_DIRECTIVE = re.compile(r"^#\s*lusd\s*:(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class ManifestRow:
    """One valid manifest row (paths resolved, values typed)."""

    line: int
    id: str
    image: Path
    target_prompt: str
    source_prompt: str = ""
    focus: tuple[str, ...] | None = None
    seed: int = 0
    preset: str = "lusd"
    overrides: dict[str, Any] = field(default_factory=dict)
    #: K candidates of the edit run together; the judge keeps the best
    candidates: int = 1
    edited: Path | None = None
    mask: Path | None = None
    #: where the edit may change the picture (a mask image or a box), None: anywhere
    region: Region | None = None


@dataclass(frozen=True)
class RowError:
    """A row that cannot run, with the reason."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Manifest:
    path: Path
    sha256: str
    rows: list[ManifestRow]
    errors: list[RowError]
    #: batch options set by the header's ``# lusd:`` lines
    directives: dict[str, Any] = field(default_factory=dict)


def read_manifest(
    path: str | Path,
    *,
    default_seed: int = 0,
    default_preset: str = "lusd",
    allowed_dirs: Sequence[str | Path] = (),
    default_candidates: int = 1,
) -> Manifest:
    """Parse and validate ``path`` (.csv or .jsonl/.json lines); never raises for bad rows.

    A row without a ``candidates`` value takes the header's ``candidates``, else
    ``default_candidates``.

    Every file a row names must lie in the manifest's folder or one of ``allowed_dirs``
    (after ``..`` and symlinks are followed). Raises ConfigError only when the file itself
    cannot be used (missing, unknown format or encoding, no image or target column,
    unknown columns).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"manifest {path} does not exist")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise ConfigError(f"manifest {path.name}: use a .csv or .jsonl file")
    text = _decode(data, path.name)
    directives, skipped = _header_directives(text, path.name)
    defaults = {
        "seed": default_seed,
        "preset": default_preset,
        "candidates": directives.get("candidates", default_candidates),
    }
    lines = text.splitlines(keepends=True)[skipped:]
    if suffix == ".csv":
        records = _csv_records(lines, path, skipped)
    else:
        records = _jsonl_records(lines, skipped)
    roots = (path.parent, *allowed_dirs)
    rows: list[ManifestRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, record in records:
        if isinstance(record, str):
            errors.append(RowError(line, record))
            continue
        try:
            row = _make_row(line, record, path.parent, defaults, roots)
        except (LUSDError, ValueError) as exc:
            errors.append(RowError(line, str(exc)))
            continue
        key = row.id.lower()
        if key in seen:
            errors.append(
                RowError(
                    line,
                    f"output name {row.id!r} is already used by line {seen[key]}; "
                    "add an 'id' column to tell the rows apart",
                )
            )
            continue
        seen[key] = line
        rows.append(row)
    if not rows and not errors:
        raise ConfigError(f"manifest {path} has no rows")
    return Manifest(path, hashlib.sha256(data).hexdigest(), rows, errors, directives)


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with its BOM; anything else is a ConfigError."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ConfigError(f"manifest {name}: broken UTF-16 text; save it as UTF-8") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"manifest {name} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError(f"manifest {name} line {line}: holds a NUL byte; is it a binary file?")
    return text


def _header_directives(text: str, name: str) -> tuple[dict[str, Any], int]:
    """The ``# lusd:`` options of the leading comment lines, and how many lines they took."""
    directives: dict[str, Any] = {}
    count = 0
    for count, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("#"):
            return directives, count - 1
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            continue
        for item in filter(None, (part.strip() for part in match.group(1).split(","))):
            key, sep, value = (p.strip() for p in item.partition("="))
            if key not in DIRECTIVES:
                raise ConfigError(
                    f"manifest {name} line {count}: unknown option {key!r} in '# lusd:'; "
                    f"known: {', '.join(DIRECTIVES)}"
                )
            try:
                directives[key] = _directive_value(key, value if sep else "")
            except ConfigError as exc:
                raise ConfigError(f"manifest {name} line {count}: {exc}") from None
    return directives, count


def _directive_value(key: str, value: str) -> Any:
    """A header option's typed value; ConfigError saying what it expects."""
    if key == "candidates":
        return candidates_value(value)
    if value.lower() not in TRUE_WORDS | FALSE_WORDS:
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    return value.lower() in TRUE_WORDS


def candidates_value(value: Any) -> int:
    """A manifest's ``candidates`` value ("3" in CSV, 3 in JSONL) checked as
    :func:`lusd.edit_path.check_candidates` does."""
    from lusd.edit_path import check_candidates

    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    return check_candidates(value)


def _canonical_columns(names: list[str], where: str) -> dict[str, str]:
    """Map raw column names to canonical ones; unknown names are a ConfigError."""
    known = setting_names()
    mapping: dict[str, str] = {}
    unknown = []
    for name in names:
        key = name.strip()
        if not key or key.startswith("Unnamed:"):
            continue  # a spreadsheet's or pandas' index column
        canon = _COLUMN_OF.get(key.lower(), key if key in known else None)
        if canon is None:
            unknown.append(key)
        elif canon in mapping.values():
            raise ConfigError(f"{where}: column {key!r} repeats {canon!r}")
        else:
            mapping[name] = canon
    if unknown:
        raise ConfigError(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; use image, "
            "target_prompt, source_prompt, focus, seed, preset, candidates, id, region or an "
            "EditConfig field"
        )
    return mapping


def _csv_records(
    lines: list[str], path: Path, offset: int = 0
) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(lines)
    try:
        return _csv_rows(reader, path, offset)
    except csv.Error as exc:
        raise ConfigError(f"manifest {path.name} line {offset + reader.line_num}: {exc}") from None


def _csv_rows(reader: Any, path: Path, offset: int) -> list[tuple[int, dict[str, Any] | str]]:
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError(f"manifest {path.name} is empty") from None
    mapping = _canonical_columns(header, f"manifest {path.name} line {offset + 1}")
    _require_columns(set(mapping.values()), f"manifest {path.name}")
    out: list[tuple[int, dict[str, Any] | str]] = []
    start = offset + reader.line_num + 1
    for values in reader:
        line, start = start, offset + reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            out.append((line, f"has {len(values)} fields, the header has {len(header)}"))
            continue
        out.append(
            (line, {mapping[k]: v for k, v in zip(header, values, strict=True) if k in mapping})
        )
    return out


def _jsonl_records(lines: list[str], offset: int = 0) -> list[tuple[int, dict[str, Any] | str]]:
    out: list[tuple[int, dict[str, Any] | str]] = []
    present: set[str] = set()
    for line, text in enumerate(lines, offset + 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            out.append((line, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            out.append((line, "must be a JSON object"))
            continue
        try:
            mapping = _canonical_columns(list(obj), f"line {line}")
        except ConfigError as exc:
            out.append((line, str(exc).removeprefix(f"line {line}: ")))
            continue
        record = {mapping[k]: v for k, v in obj.items()}
        present |= set(record)
        out.append((line, record))
    if present:
        _require_columns(present, "manifest")
    return out


def _require_columns(present: set[str], where: str) -> None:
    missing = [c for c in ("image", "target_prompt") if c not in present]
    if missing:
        raise ConfigError(f"{where} has no {' or '.join(missing)} column")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _make_row(
    line: int,
    rec: dict[str, Any],
    base: Path,
    defaults: dict[str, Any],
    roots: Sequence[str | Path] = (),
) -> ManifestRow:
    """One row from its record; ``defaults`` holds the seed, preset and candidates of rows
    that leave them empty."""
    image_ref = _text(rec.get("image"))
    if not image_ref:
        raise ValueError("the image path is empty")
    image = _resolve(image_ref, base, roots, "image")
    if not image.is_file():
        raise ValueError(f"image {image_ref!r} not found ({image})")
    _check_header(image, image_ref)
    target = _text(rec.get("target_prompt"))
    if not target:
        raise ValueError("the target prompt is empty")
    check_prompt(target)
    source = _text(rec.get("source_prompt"))
    focus_text = _text(rec.get("focus"))
    focus = tuple(w.strip() for w in focus_text.split(";") if w.strip()) or None
    seed_text = _text(rec.get("seed"))
    seed = check_seed(seed_text) if seed_text else defaults["seed"]
    preset = _text(rec.get("preset")) or defaults["preset"]
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    raw_candidates = rec.get("candidates")
    candidates = defaults["candidates"]
    if _text(raw_candidates):
        candidates = candidates_value(raw_candidates)
    check_seed(seed + candidates - 1)  # the last candidate's seed
    overrides = {k: v for k, v in rec.items() if k not in ALIASES and _text(v) != ""}
    row_id = _text(rec.get("id"))
    if row_id:
        if not _SAFE_NAME.match(row_id):
            raise ValueError(f"id {row_id!r} must be letters, digits, '.', '_' or '-' (max 100)")
    else:
        row_id = default_id(image_ref, target)
    edited = _text(rec.get("edited"))
    mask = _text(rec.get("mask"))
    region = _region(_text(rec.get("region")), image, base, roots)
    return ManifestRow(
        line=line,
        id=row_id,
        image=image,
        target_prompt=target,
        source_prompt=source,
        focus=focus,
        seed=seed,
        preset=preset,
        overrides=overrides,
        candidates=candidates,
        edited=_resolve(edited, base, roots, "edited image") if edited else None,
        mask=_resolve(mask, base, roots, "mask") if mask else None,
        region=region,
    )


def _region(ref: str, image: Path, base: Path, roots: Sequence[str | Path]) -> Region | None:
    """A row's region: a box, or a mask image in the allowed folders; checked against the
    image's size (from its header) so that a bad region is a bad row, not a failed job."""
    if not ref:
        return None
    if not Region.looks_like_box(ref):
        ref = str(_resolve(ref, base, roots, "region"))
    try:
        region = Region.parse(ref)
        with Image.open(image) as opened:
            region.pixels(opened.size)
    except RegionError as exc:
        raise ValueError(str(exc)) from None
    return region


def _check_header(image: Path, ref: str) -> None:
    """Cheap readability check: the header only (format, size within the pixel limit)."""
    from lusd.images import check_image_file

    try:
        check_image_file(image)
    except ImageInputError as exc:
        raise ValueError(str(exc).replace(str(image), f"image {ref!r}")) from None


def _resolve(ref: str, base: Path, roots: Sequence[str | Path] = (), what: str = "file") -> Path:
    p = Path(ref).expanduser()
    p = (p if p.is_absolute() else base / p).resolve()
    if roots and not is_inside(p, roots):
        raise ValueError(
            f"{what} {ref!r} is outside the allowed folders (the manifest's folder"
            f"{', --allow-dir' if len(roots) > 1 else ''}): {p}; move it there or pass "
            "--allow-dir FOLDER"
        )
    return p


def default_id(image_ref: str, target_prompt: str) -> str:
    """Output name from the image stem and a short hash of (image, target prompt)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image_ref).stem).strip("._-")[:60] or "image"
    digest = hashlib.sha1(f"{image_ref}\n{target_prompt}".encode()).hexdigest()[:8]
    return f"{stem}-{digest}"
