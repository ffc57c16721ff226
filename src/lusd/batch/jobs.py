"""Jobs: a manifest row with its full EditConfig, and the hash that identifies its output."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lusd.batch.manifest import ManifestRow, RowError
from lusd.config import EditConfig, preset_config
from lusd.edit_path import EditRequest
from lusd.errors import LUSDError
from lusd.regions import Region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one edit (picklable, no model objects)."""

    id: str
    line: int
    image: str
    source_prompt: str
    target_prompt: str
    focus: tuple[str, ...] | None
    seed: int
    preset: str
    config: EditConfig
    config_hash: str
    region: Region | None = None
    crop: bool = True
    #: candidates run together; the judge keeps the best
    candidates: int = 1
    #: score the kept candidate even when it is the only one (review flags)
    judge: bool = False

    def request(self, image: Image.Image) -> EditRequest:
        """The edit of this job on its (decoded) input image."""
        return EditRequest(
            image,
            self.source_prompt,
            self.target_prompt,
            self.config,
            preset=self.preset,
            seed=self.seed,
            focus=self.focus,
            region=self.region,
            crop=self.crop,
            num_candidates=self.candidates,
            judge=self.judge,
        )


WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".ckpt", ".pt", ".pth"})


def model_key(model: str | None) -> str:
    """The model's name and weights for the journal: ``"shapes@<hash>"`` for the shipped
    model, ``"/abs/path@<hash>"`` for a local folder or file, a hub id as given.

    The weights' hash is in every row's config hash, so rows made with other weights
    (a retrained or replaced model in the same folder) are reported as changed.
    """
    if model is None:
        from lusd.shapes import SHAPES_MODEL_DIR

        return f"shapes@{weights_stamp(Path(SHAPES_MODEL_DIR))}"
    p = Path(model).expanduser()
    return f"{p.resolve()}@{weights_stamp(p)}" if p.exists() else model


def weights_stamp(path: Path) -> str:
    """Short content hash of the weight files of a model folder (or of one weights file)."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if _is_weights(f))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        with f.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()[:12]


def _is_weights(path: Path) -> bool:
    return path.suffix in WEIGHT_SUFFIXES and path.is_file()


def config_hash(row: ManifestRow, config: EditConfig, model: str, crop: bool = True) -> str:
    """Hash of everything that determines a row's output (config, prompts, focus, seed, model,
    region, candidates).

    The image file's content is not hashed (that would read every image on each
    run); its path is. A mask region's content is (its label carries its hash).
    """
    values = {
        "config": config.row_hash_dict(),
        "image": str(row.image),
        "source": row.source_prompt,
        "target": row.target_prompt,
        "focus": list(row.focus) if row.focus else None,
        "seed": row.seed,
        "model": model,
    }
    if row.region is not None:  # rows without one hash as they always did
        values["region"] = [row.region.label, crop]
    if row.candidates != 1:  # so do rows with one candidate
        values["candidates"] = row.candidates
    blob = json.dumps(values, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_jobs(
    rows: list[ManifestRow],
    base: EditConfig,
    model: str,
    overrides: dict[str, Any] | None = None,
    crop: bool = True,
    judge: bool = False,
) -> tuple[list[JobSpec], list[RowError]]:
    """Resolve each row's config: model defaults <- preset <- CLI overrides <- row overrides.

    ``model`` is the journal's key (``name@weights``); ``crop`` False edits regions' rows
    on the whole picture; ``judge`` scores every row (review flags).
    """
    jobs: list[JobSpec] = []
    errors: list[RowError] = []
    for row in rows:
        try:
            cfg = preset_config(row.preset, base, **(overrides or {})).replace(**row.overrides)
            if row.region is not None:
                row.region.check_config(cfg)
        except LUSDError as exc:
            errors.append(RowError(row.line, str(exc)))
            continue
        jobs.append(
            JobSpec(
                id=row.id,
                line=row.line,
                image=str(row.image),
                source_prompt=row.source_prompt,
                target_prompt=row.target_prompt,
                focus=row.focus,
                seed=row.seed,
                preset=row.preset,
                config=cfg,
                config_hash=config_hash(row, cfg, model, crop),
                region=row.region,
                crop=crop,
                candidates=row.candidates,
                judge=judge,
            )
        )
    return jobs, errors


def group_jobs(jobs: list[JobSpec], size: int) -> list[list[JobSpec]]:
    """``jobs`` in groups of at most ``size`` that share one config (``lusd batch --group``),
    in the order of each group's first job; the order of jobs within a config is kept."""
    groups: list[list[JobSpec]] = []
    filling: dict[EditConfig, list[JobSpec]] = {}
    for job in jobs:
        group = filling.get(job.config)
        if group is None or len(group) >= size:
            group = filling[job.config] = []
            groups.append(group)
        group.append(job)
    return groups
