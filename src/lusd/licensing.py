"""What a model's licence lets you do with its outputs: read it, look it up, enforce it.

The licence comes from the model card (YAML front-matter ``license:`` of ``README.md`` in
the model folder, or beside a single checkpoint file), else from the first recognisable
line of a ``LICENSE`` file, else it is ``unknown``. :data:`KNOWN_LICENSES` maps licence
ids (the Hugging Face hub's spelling) to whether commercial use is allowed. The table is
a summary to help you decide, not legal advice: the licence text is what binds you.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lusd.errors import LicenseError

CommercialUse = Literal["allowed", "restricted", "not allowed", "unknown"]
#: commercial_use values under which ``--require-commercial`` lets a model run
COMMERCIAL_OK: frozenset[str] = frozenset({"allowed", "restricted"})
CARD_NAMES = ("README.md",)
LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "COPYING")


@dataclass(frozen=True)
class LicenseTerms:
    """One row of the licence table."""

    name: str
    commercial_use: CommercialUse
    note: str


_OPENRAIL = "the licence's use restrictions apply to you and must be passed on to your users"
_NC = "non-commercial use only"
KNOWN_LICENSES: dict[str, LicenseTerms] = {
    "creativeml-openrail-m": LicenseTerms(
        "CreativeML Open RAIL-M", "restricted", f"commercial use allowed; {_OPENRAIL} (SD 1.x)"
    ),
    "openrail++": LicenseTerms(
        "CreativeML Open RAIL++-M", "restricted", f"commercial use allowed; {_OPENRAIL} (SDXL)"
    ),
    "openrail": LicenseTerms("Open RAIL", "restricted", f"commercial use allowed; {_OPENRAIL}"),
    "bigscience-openrail-m": LicenseTerms(
        "BigScience Open RAIL-M", "restricted", f"commercial use allowed; {_OPENRAIL}"
    ),
    "stabilityai-ai-community": LicenseTerms(
        "Stability AI Community License",
        "restricted",
        "commercial use free below USD 1M annual revenue; above it you need a Stability AI "
        "enterprise licence",
    ),
    "sai-nc-community": LicenseTerms(
        "Stability AI Non-Commercial Research Community License",
        "not allowed",
        f"{_NC} and research (e.g. SDXL-Turbo); commercial use needs a licence from Stability AI",
    ),
    "flux-1-dev-non-commercial-license": LicenseTerms(
        "FLUX.1 [dev] Non-Commercial License",
        "not allowed",
        f"{_NC}; outputs may be used commercially, the model may not",
    ),
    "cc0-1.0": LicenseTerms("CC0 1.0", "allowed", "public-domain dedication; no conditions"),
    "cc-by-4.0": LicenseTerms("CC BY 4.0", "allowed", "commercial use allowed with attribution"),
    "cc-by-sa-4.0": LicenseTerms(
        "CC BY-SA 4.0", "allowed", "commercial use allowed with attribution; share alike"
    ),
    "cc-by-nc-4.0": LicenseTerms("CC BY-NC 4.0", "not allowed", f"{_NC}, with attribution"),
    "cc-by-nc-sa-4.0": LicenseTerms(
        "CC BY-NC-SA 4.0", "not allowed", f"{_NC}, with attribution; share alike"
    ),
    "cc-by-nc-nd-4.0": LicenseTerms(
        "CC BY-NC-ND 4.0", "not allowed", f"{_NC}, with attribution; no derivatives"
    ),
    "mit": LicenseTerms("MIT", "allowed", "commercial use allowed; keep the copyright notice"),
    "apache-2.0": LicenseTerms(
        "Apache 2.0", "allowed", "commercial use allowed; keep the notices and state changes"
    ),
    "bsd-3-clause": LicenseTerms("BSD 3-Clause", "allowed", "commercial use allowed; keep notice"),
    "bsd-2-clause": LicenseTerms("BSD 2-Clause", "allowed", "commercial use allowed; keep notice"),
    "unknown": LicenseTerms(
        "unknown", "unknown", "no licence found: ask the model's authors before shipping outputs"
    ),
    "other": LicenseTerms(
        "other", "unknown", "licence 'other' without a license_name: read the model's own terms"
    ),
}
#: Any other CC non-commercial id (cc-by-nc-2.0, cc-by-nc-sa-3.0, ...) is non-commercial.
_CC_NC = re.compile(r"^cc-by-nc(-sa|-nd)?-\d\.\d$")

#: First line of a LICENSE file that matches one of these names the licence.
_LICENSE_LINES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), license_id)
    for pattern, license_id in (
        (r"creativeml open rail\+\+-m", "openrail++"),
        (r"creativeml open rail-m", "creativeml-openrail-m"),
        (r"stability ai (ai )?community license", "stabilityai-ai-community"),
        (r"non-commercial research community license", "sai-nc-community"),
        (r"flux\.1 \[dev\] non-commercial license", "flux-1-dev-non-commercial-license"),
        (r"attribution-noncommercial-sharealike 4\.0", "cc-by-nc-sa-4.0"),
        (r"attribution-noncommercial-noderivatives 4\.0", "cc-by-nc-nd-4.0"),
        (r"attribution-noncommercial 4\.0", "cc-by-nc-4.0"),
        (r"attribution-sharealike 4\.0", "cc-by-sa-4.0"),
        (r"attribution 4\.0 international", "cc-by-4.0"),
        (r"\bcc0 1\.0\b", "cc0-1.0"),
        (r"\bmit license\b", "mit"),
        (r"permission is hereby granted, free of charge", "mit"),
        (r"apache license", "apache-2.0"),
        (r"bsd 3-clause", "bsd-3-clause"),
        (r"bsd 2-clause", "bsd-2-clause"),
        (r"\bopen ?rail\b", "openrail"),
    )
)


@dataclass(frozen=True)
class ModelLicense:
    """The licence of one model and where it was read."""

    id: str
    name: str
    commercial_use: CommercialUse
    note: str
    #: where the licence came from: the card's front-matter, a LICENSE file, or nothing
    source: str
    known: bool = True

    @property
    def permits_commercial(self) -> bool:
        return self.commercial_use in COMMERCIAL_OK

    def to_dict(self) -> dict[str, str | bool]:
        return {
            "license": self.id,
            "license_name": self.name,
            "commercial_use": self.commercial_use,
            "license_note": self.note,
            "license_source": self.source,
            "license_known": self.known,
        }


def lookup(license_id: str, source: str = "given") -> ModelLicense:
    """The table's terms for ``license_id``; an id not in the table has commercial use unknown."""
    key = license_id.strip().lower()
    terms = KNOWN_LICENSES.get(key)
    if terms is None and _CC_NC.match(key):
        terms = LicenseTerms(key.upper(), "not allowed", _NC)
    if terms is None:
        note = f"licence id {license_id!r} is not in lusd's table: read its terms yourself"
        return ModelLicense(license_id, license_id, "unknown", note, source, known=False)
    return ModelLicense(key, terms.name, terms.commercial_use, terms.note, source)


def model_location(model: str | Path | None) -> Path | None:
    """The model's local folder or weights file; a hub id only if it is in the local cache.

    ``None`` is the shipped shapes model. Nothing is downloaded.
    """
    if model is None:
        from lusd.shapes import SHAPES_MODEL_DIR

        return Path(SHAPES_MODEL_DIR)
    path = Path(model).expanduser()
    if path.exists():
        return path
    text = str(model)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True))
    except Exception:  # not cached, no hub library, a bad id: nothing local to read
        return None


def read_model_license(model: str | Path | None) -> ModelLicense:
    """The licence of ``model`` (folder, single file, cached hub id or None for shapes).

    Raises LicenseError for a model card whose front-matter cannot be read.
    """
    location = model_location(model)
    if location is None:
        return lookup("unknown", "no local copy to read (hub id not in the local cache)")
    folder = location if location.is_dir() else location.parent
    cards = [folder / name for name in CARD_NAMES]
    if location.is_file():
        cards.insert(0, location.with_suffix(".md"))
    for card in cards:
        if card.is_file():
            license_id = card_license(card)
            if license_id is not None:
                return lookup(license_id, f"{card.name} front-matter")
    for name in LICENSE_FILES:
        path = folder / name
        if path.is_file():
            found = license_file_id(path)
            if found is not None:
                return lookup(found, f"{name} file")
            return lookup("unknown", f"{name} file (no line lusd recognises)")
    return lookup("unknown", "no model card or LICENSE file")


def license_for(model: str | Path | None, *, strict: bool) -> ModelLicense:
    """:func:`read_model_license`; unless ``strict``, an unreadable card is ``unknown``."""
    try:
        return read_model_license(model)
    except LicenseError as error:
        if strict:
            raise
        return lookup("unknown", f"unreadable model card: {error}")


def card_license(path: Path) -> str | None:
    """The ``license:`` of a model card's YAML front-matter; None when it has none.

    ``license: other`` with a ``license_name`` gives the name (the hub's convention).
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8").lstrip("\ufeff")
    except (OSError, UnicodeDecodeError) as error:
        raise LicenseError(f"{path}: cannot read the model card ({error})") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "..."))
    except StopIteration:
        raise LicenseError(
            f"{path}: malformed model card: the front-matter opened with '---' is never closed"
        ) from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise LicenseError(
            f"{path}: malformed model card: front-matter is not valid YAML ({problem}{where})"
        ) from None
    if not isinstance(data, dict):
        raise LicenseError(f"{path}: malformed model card: front-matter is not a YAML mapping")
    value = data.get("license")
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise LicenseError(
            f"{path}: malformed model card: 'license' must be one licence id, got {value!r}"
        )
    name = data.get("license_name")
    if value.strip().lower() == "other" and isinstance(name, str) and name.strip():
        return name.strip()
    return value.strip()


def license_file_id(path: Path) -> str | None:
    """The licence id named by the first recognisable line of a LICENSE file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise LicenseError(f"{path}: cannot read the licence file ({error.strerror})") from None
    for line in text.splitlines()[:200]:
        for pattern, license_id in _LICENSE_LINES:
            if pattern.search(line):
                return license_id
    return None


def require_commercial(model_license: ModelLicense, model_name: str) -> None:
    """LicenseError unless the licence allows commercial use (with or without restrictions)."""
    if model_license.permits_commercial:
        return
    raise LicenseError(
        f"model {model_name}: licence {model_license.id!r} ({model_license.source}): commercial "
        f"use {model_license.commercial_use} ({model_license.note}); use another model or drop "
        "--require-commercial"
    )
