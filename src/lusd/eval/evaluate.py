"""``lusd eval``: metrics of a finished batch (OUTDIR) or of a manifest with edited images.

Pixel metrics always run; the shapes oracle runs when the batch used the shapes
model; CLIP metrics run when a CLIP model is given. Per-edit values go into the
journal's metrics table (OUTDIR) or a CSV; the summary is returned and written
as ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lusd.errors import ConfigError, ImageInputError
from lusd.eval.metrics import clip_auc, pixel_metrics, swept_mean
from lusd.eval.oracle import oracle_available, oracle_metrics
from lusd.inputs import check_output_folder

log = logging.getLogger(__name__)

MEAN_KEYS = ("l1", "l2", "l1_outside", "l2_outside", "clip_i", "clip_t", "clip_r")


@dataclass
class EvalResult:
    per_edit: dict[str, dict[str, float]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _open(path: Path) -> Image.Image:
    from lusd.images import load_image

    return load_image(path)


def _number(value: Any) -> bool:
    return value is not None and not math.isnan(value)


def summarize(per_edit: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Means of the distances and CLIP scores, medians of background change, rates, CLIP-AUC."""

    def values(key: str) -> list[float]:
        return [m[key] for m in per_edit.values() if _number(m.get(key))]

    summary: dict[str, Any] = {"edits": len(per_edit)}
    for key in MEAN_KEYS:
        v = values(key)
        summary[key] = float(np.mean(v)) if v else None
    for key in ("bg_change", "oracle_bg_change"):
        v = values(key)
        summary[f"median_{key}"] = float(np.median(v)) if v else None
    v = values("oracle_success")
    summary["oracle_success_rate"] = float(np.mean(v)) if v else None
    summary["oracle_judged"] = len(v)
    if oracle_available():
        from lusd.shapes.mask_metrics import summarize_localisation

        summary.update(summarize_localisation(list(per_edit.values())))
    r = values("clip_r")
    summary["clip_auc"] = clip_auc(r) if r else None
    for key, star in (("l1", "l1_star"), ("clip_i", "clip_i_star")):
        pairs = [
            (m[key], m["clip_r"])
            for m in per_edit.values()
            if _number(m.get(key)) and _number(m.get("clip_r"))
        ]
        summary[star] = swept_mean(*zip(*pairs, strict=True)) if pairs else None
    return summary


def evaluate_outdir(
    outdir: str | Path,
    clip: str | None = None,
    device: str | None = None,
    oracle: bool | None = None,
) -> EvalResult:
    """Recompute the metrics of every done job in OUTDIR and store them in its journal."""
    from lusd.batch.journal import JOURNAL_NAME, Journal
    from lusd.batch.metrics_files import write_metrics_files

    outdir = Path(outdir)
    with Journal(outdir / JOURNAL_NAME, create=False) as journal:
        check_output_folder(outdir, "batch folder")  # metrics.json goes there
        if oracle is None:
            oracle = json.loads(journal.get_meta("oracle") or "false")
        scorer, notes = _scorer(clip, device, oracle)
        per_edit: dict[str, dict[str, float]] = {}
        for row in journal.jobs("done"):
            try:
                metrics = _one(
                    Path(row["image"]),
                    outdir / row["output"],
                    outdir / row["mask"],
                    row["target_prompt"],
                    row["source_prompt"],
                    scorer,
                    oracle,
                    json.loads(row["config"]).get("mask_threshold", 0.25),
                )
            except ImageInputError as error:
                notes.append(f"{row['id']} skipped: {error} (lusd batch redoes a lost output)")
                continue
            journal.put_metrics(row["id"], metrics)
            per_edit[row["id"]] = metrics
        stored = journal.metrics()
        per_edit = {key: stored.get(key, vals) for key, vals in per_edit.items()}
        result = EvalResult(per_edit, summarize(per_edit), notes)
        write_metrics_files(journal, outdir, notes)
    return result


def evaluate_manifest(
    manifest: str | Path,
    out_csv: str | Path,
    clip: str | None = None,
    device: str | None = None,
    oracle: bool = False,
    allowed_dirs: tuple[Path, ...] = (),
) -> EvalResult:
    """MagicBrush-style layout: rows with an input ``image``, ``target_prompt`` and ``edited``."""
    from lusd.batch.manifest import read_manifest

    check_output_folder(Path(out_csv).parent, "metrics folder (-o)")
    m = read_manifest(manifest, allowed_dirs=allowed_dirs)
    if m.errors:
        raise ConfigError("; ".join(str(e) for e in m.errors[:10]))
    if any(r.edited is None for r in m.rows):
        raise ConfigError(
            f"{Path(manifest).name}: every row needs an 'edited' column (the edited image); "
            "to evaluate a batch give its output folder instead"
        )
    scorer, notes = _scorer(clip, device, oracle)
    per_edit = {}
    for r in m.rows:
        try:
            per_edit[r.id] = _one(
                r.image,
                r.edited,  # type: ignore[arg-type]
                r.mask,
                r.target_prompt,
                r.source_prompt,
                scorer,
                oracle,
            )
        except ImageInputError as error:
            notes.append(f"line {r.line} skipped: {error}")
    names = sorted({k for v in per_edit.values() for k in v})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", *names])
    for key, vals in per_edit.items():
        writer.writerow([key, *(vals.get(n, "") for n in names)])
    from lusd.files import atomic_write

    atomic_write(Path(out_csv), buf.getvalue().encode())
    return EvalResult(per_edit, summarize(per_edit), notes)


def _scorer(clip: str | None, device: str | None, oracle: bool) -> tuple[Any, list[str]]:
    notes = []
    scorer = None
    if clip:
        from lusd.eval.clip import ClipScorer

        scorer = ClipScorer(clip, device)
    else:
        notes.append("no CLIP model given (--clip PATH): CLIP-I/T/R and CLIP-AUC skipped")
    if oracle and not oracle_available():
        notes.append("lusd.shapes oracle not available: oracle success skipped")
    return scorer, notes


def _one(
    image: Path,
    edited: Path,
    mask: Path | None,
    target: str,
    source_prompt: str,
    scorer: Any,
    oracle: bool,
    threshold: float = 0.25,
) -> dict[str, float]:
    source, out = _open(image), _open(edited)
    mask_img = _open(mask).convert("L") if mask is not None and mask.exists() else None
    metrics = pixel_metrics(source, out, mask_img, threshold)
    if oracle:
        metrics.update(oracle_metrics(source, out, target, source_prompt, mask_img))
    if scorer is not None:
        from lusd.eval.clip import clip_scores

        metrics.update(clip_scores(scorer, source, out, target))
    return metrics
