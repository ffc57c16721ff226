"""A model's identity in outputs and reports: its name and a hash of its weight files.

Hashing a multi-gigabyte checkpoint takes seconds, so hashes are cached by the weight
files' paths, sizes and modification times (``$XDG_CACHE_HOME/lusd/weights-hash.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lusd.licensing import model_location

log = logging.getLogger(__name__)
_CACHE_NAME = "weights-hash.json"


def model_name(model: str | os.PathLike | None) -> str:
    """How outputs name the model: ``shapes`` for the shipped one, else as given."""
    return "shapes" if model is None else str(model)


def model_weights_hash(model: str | os.PathLike | None) -> str:
    """Short content hash of the model's weights; "" when there is no local copy."""
    location = model_location(model)
    return "" if location is None else weights_hash(location)


def weights_hash(path: Path) -> str:
    """``lusd.batch.jobs.weights_stamp`` of ``path``, cached by the files' stat."""
    from lusd.batch.jobs import WEIGHT_SUFFIXES, weights_stamp

    path = path.resolve()
    files = [path] if path.is_file() else sorted(path.rglob("*"))
    stamp = hashlib.sha256()
    for f in files:
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            info = f.stat()
            stamp.update(f"{f}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    key = stamp.hexdigest()
    cache = _read_cache()
    if key in cache:
        return cache[key]
    value = weights_stamp(path)
    cache[key] = value
    _write_cache(cache)
    return value


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lusd" / _CACHE_NAME


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_cache(cache: dict[str, str]) -> None:
    path = _cache_path()
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(list(cache.items())[-256:])))
        os.replace(tmp, path)


@dataclass(frozen=True)
class ModelIdentity:
    """How every output names a model, and the hash of its weights ("" when not local)."""

    name: str
    weights_hash: str = ""


def identify(model: str | os.PathLike | None) -> ModelIdentity:
    """The identity of ``model`` as ``lusd.loading.load_pipeline`` was given it."""
    return ModelIdentity(model_name(model), model_weights_hash(model))
