"""The batch's metrics as files: ``metrics.csv`` (one line per manifest row) and
``metrics.json`` (the same rows, the metrics summary and the review counts).

Written from the journal at the end of every ``lusd batch`` run, so a spreadsheet or a
script reads each row's state, judge score and review flag without SQLite.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lusd.batch.journal import Journal
from lusd.batch.review import review_counts
from lusd.files import atomic_write

CSV_NAME = "metrics.csv"
JSON_NAME = "metrics.json"
#: The per-row columns before the metrics (which follow in name order).
ROW_COLUMNS = (
    "line", "id", "state", "image", "output", "seed", "candidates", "judge_score",
    "needs_review", "seconds", "unet_calls", "error",
)  # fmt: skip


def metrics_rows(journal: Journal) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per manifest row (bad rows too, as ``state`` "bad row"), by line, and the
    names of the metrics they carry."""
    metrics = journal.metrics()
    names = sorted({name for values in metrics.values() for name in values})
    rows: list[dict[str, Any]] = []
    for job in journal.jobs():
        done = job["state"] == "done"
        flag = job["needs_review"]
        rows.append(
            {
                "line": job["line"],
                "id": job["id"],
                "state": job["state"],
                "image": job["image"],
                "output": job["output"] if done else None,
                "seed": job["seed"],
                "candidates": job["candidates"],
                "judge_score": job["judge_score"] if done else None,
                "needs_review": None if flag is None or not done else bool(flag),
                "seconds": job["seconds"],
                "unet_calls": job["unet_calls"] if done else None,
                "error": job["error"] if job["state"] == "failed" else None,
                **{name: metrics.get(job["id"], {}).get(name) for name in names},
            }
        )
    for bad in json.loads(journal.get_meta("bad_rows") or "[]"):
        rows.append({"line": bad["line"], "state": "bad row", "error": bad["message"]})
    rows.sort(key=lambda row: row["line"])
    return rows, names


def write_metrics_files(
    journal: Journal, outdir: str | Path, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write OUTDIR/metrics.csv and OUTDIR/metrics.json from ``journal``; returns their paths.

    metrics.json holds ``summary`` (:func:`lusd.eval.evaluate.summarize` of the done rows),
    ``notes``, ``review`` (the counts and their line, or null without a threshold) and
    ``rows``.
    """
    from lusd.eval.evaluate import summarize

    outdir = Path(outdir)
    rows, names = metrics_rows(journal)
    columns = [*ROW_COLUMNS, *names]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    csv_path, json_path = outdir / CSV_NAME, outdir / JSON_NAME
    atomic_write(csv_path, text.getvalue().encode())
    done = [row for row in rows if row["state"] == "done"]
    per_edit = {row["id"]: {n: row[n] for n in names if row[n] is not None} for row in done}
    bad = sum(1 for row in rows if row["state"] == "bad row")
    counts = review_counts(
        [row for row in rows if row["state"] != "bad row"], bad, journal.review_threshold()
    )
    document = {
        "summary": summarize(per_edit),
        "notes": list(notes),
        "review": None if counts is None else counts.to_dict(),
        "rows": [{key: _json(row.get(key)) for key in columns} for row in rows],
    }
    atomic_write(json_path, (json.dumps(document, indent=2) + "\n").encode())
    return csv_path, json_path


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, ``true``/``false`` for flags."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _json(value: Any) -> Any:
    """JSON has no NaN: a NaN metric is null."""
    return None if isinstance(value, float) and math.isnan(value) else value
