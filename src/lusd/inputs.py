"""Checks of user-supplied values outside EditConfig: seeds, limits, prices, folders, prompts.

The CLI commands, the batch manifest and the web app call these, so one bad value
gets the same one-line error wherever it comes from. EditConfig checks its own fields;
``lusd.images`` checks pictures.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lusd.errors import ConfigError, PromptError

#: Seeds are 0 <= seed < 2**63 (torch takes 64 bits; SQLite stores signed 64-bit integers).
SEED_LIMIT = 2**63
#: Words that name nothing in a picture: a target prompt of only these says nothing to edit.
STOP_WORDS = frozenset((
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "no", "every", "each",
    "of", "in", "on", "at", "to", "for", "with", "by", "from", "into", "onto", "over", "under",
    "near", "off", "up", "down", "out", "about", "as", "and", "or", "but", "nor", "so", "than",
    "then", "if", "it", "its", "is", "are", "was", "were", "be", "been", "being", "do", "does",
    "did", "has", "have", "had", "i", "me", "my", "you", "your", "he", "him", "his", "she",
    "her", "we", "us", "our", "they", "them", "their", "there", "here", "very",
))  # fmt: skip
#: Words as the CLIP tokenizer sees them, in any script (a CJK run is one word).
_WORDS = re.compile(r"[^\W_]+")
#: An output folder with less free space than this is reported as full before any work.
MIN_FREE_BYTES = 1_000_000


#: Words read as true and as false in text settings (--set, manifest cells and headers).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    """A true/false word (any case, surrounding spaces ignored); ValueError otherwise."""
    word = text.strip().lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(text)
    return word in TRUE_WORDS


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` (int, integral float or text) as a seed; ConfigError if it is not one."""
    number = _integer(value, name)
    if not 0 <= number < SEED_LIMIT:
        raise ConfigError(f"{name} must be between 0 and 2**63 - 1, got {number}")
    return number


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an integer in [low, high]; ConfigError naming ``name`` otherwise."""
    number = _integer(value, name)
    if number < low or (high is not None and number > high):
        upper = f"{high:,}" if high is not None else "any"
        raise ConfigError(f"{name} must be between {low:,} and {upper}, got {number:,}")
    return number


def check_number(value: Any, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a finite float in [low, high]; ConfigError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise ConfigError(f"{name} must be a finite number {bounds}, got {value!r}")
    return number


def _integer(value: Any, name: str) -> int:
    """Integers, integral floats ("3", "3.0", 3.0) and nothing else (no NaN, inf, bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float | str):
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number == int(number):
            return int(number)
    raise ConfigError(f"{name} must be an integer, got {value!r}")


def check_prompt(text: str, name: str = "target prompt") -> str:
    """``text`` if it names something; PromptError when it is only stop-words or punctuation.

    Any script counts (the text encoder reads them all); so do emoji and other symbols.
    An empty prompt is left to the caller, whose message says what that prompt is for.
    """
    if not text.strip() or any(unicodedata.category(c) == "So" for c in text):
        return text
    words = _WORDS.findall(text.casefold())
    shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
    if not words:
        raise PromptError(
            f"the {name} {shown!r} has no words: say what the edited image should show"
        )
    if all(word in STOP_WORDS for word in words):
        raise PromptError(
            f"the {name} {shown!r} has only stop-words ({', '.join(dict.fromkeys(words))}): "
            "say what the edited image should show"
        )
    return text


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse an output folder that cannot be created or written, or whose disk is full.

    Nothing is created: the nearest existing ancestor is checked instead.
    """
    path = Path(folder).expanduser().absolute()
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {existing} is not writable; choose another folder")
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"{what} {path}: the disk is full ({free:,} bytes free); free some space first"
        )
    return path


def is_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """Whether ``path``, resolved (symlinks and ``..`` followed), lies under one of ``roots``."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(Path(root).expanduser().resolve()) for root in roots)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def parse_size(value: Any, name: str) -> int:
    """A size such as ``10mb``, ``500kb``, ``1.5gb`` or ``4096`` (bytes) as a byte count."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower().replace(" ", "")
        digits = text.rstrip("kmgb")
        unit = text[len(digits) :]
        try:
            number = float(digits)
        except ValueError:
            number = math.nan
    if unit not in _SIZE_UNITS or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a positive size such as 10mb or 500kb, got {value!r}")
    size = int(number * _SIZE_UNITS[unit])
    if size < 1 or size > 1024**4:
        raise ConfigError(f"{name} must lie between 1 byte and 1tb, got {value!r}")
    return size
