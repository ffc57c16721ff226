"""Batch throughput: a shapes-world manifest run locally and on a local Ray cluster.

Builds N seeded shapes-world edit cases (add / colour / shape, from
lusd.shapes.edits), writes their 64x64 images and a CSV manifest, then runs
``lusd batch`` logic once per backend into a fresh folder and reports edits per
minute (wall clock from start to last result, model loading and Ray start-up
included, and in steady state from the per-edit times), with the oracle success
rate and background change of the run.

    python bench/batch_throughput.py --rows 50                     # shipped shapes model
    python bench/batch_throughput.py --rows 50 --model tiny --set num_steps=20
    python bench/batch_throughput.py --rows 32 --backends local --groups 1,4,8 \
        --out bench/results/batch_groups.json          # rows per hour by --group
writes bench/results/batch_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write_shapes_manifest(folder: Path, rows: int, seed: int = 7) -> Path:
    """Render ``rows`` edit cases into folder/images and write folder/manifest.csv."""
    from lusd.shapes.edits import make_cases

    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "source_prompt", "target_prompt", "seed"])
        for i, case in enumerate(make_cases(rows, seed)):
            case.image().save(folder / "images" / f"{case.case_id}.png")
            writer.writerow(
                [
                    case.case_id,
                    f"images/{case.case_id}.png",
                    case.source_prompt,
                    case.target_prompt,
                    i,
                ]
            )
    return path


def tiny_model(folder: Path) -> str:
    from lusd.testing.tiny import save_tiny_model

    return str(save_tiny_model(folder / "tiny-model"))


def run_backend(
    manifest: Path,
    outdir: Path,
    backend: str,
    workers: int,
    model: str | None,
    overrides: dict,
    threads: int | None,
    group: int = 1,
) -> dict:
    from lusd.batch import BatchOptions, run_batch
    from lusd.batch.journal import Journal
    from lusd.eval.evaluate import summarize

    if outdir.exists():
        shutil.rmtree(outdir)
    opts = BatchOptions(
        manifest,
        outdir,
        model=model,
        overrides=overrides,
        backend=backend,
        workers=workers,
        threads=threads,
        device="cpu",
        oracle=model is None,
        group=group,
    )
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    summary = run_batch(opts)
    wall = time.perf_counter() - start
    with Journal(outdir / "journal.sqlite") as journal:
        rows = [dict(r) for r in journal.jobs("done")]
        metrics = journal.metrics()
    per_edit = [r["seconds"] for r in rows]
    quality = summarize({r["id"]: metrics.get(r["id"], {}) for r in rows})
    steady = workers * 60.0 / statistics.mean(per_edit) if per_edit else 0.0
    return {
        "backend": backend,
        "workers": workers,
        "group": group,
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "threads_per_worker": threads,
        "done": summary.done,
        "failed": summary.failed,
        "wall_seconds": round(wall, 2),
        "edits_per_min_wall": round(60.0 * summary.done / wall, 2),
        "edits_per_hour_wall": round(3600.0 * summary.done / wall, 1),
        "edits_per_min_steady": round(steady, 2),
        "median_seconds_per_edit": round(statistics.median(per_edit), 3) if per_edit else None,
        "unet_calls_mean": statistics.mean(r["unet_calls"] for r in rows) if rows else None,
        "oracle_success_rate": quality["oracle_success_rate"],
        "median_oracle_bg_change": quality["median_oracle_bg_change"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--model", default=None, help="model folder, 'tiny', or none = shapes model")
    ap.add_argument("--set", action="append", default=[], help="EditConfig KEY=VALUE")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lusd-batch-bench"))
    ap.add_argument("--backends", default="local,ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--groups", default="1", help="comma list of --group values to run")
    ap.add_argument(
        "--local-threads",
        type=int,
        default=1,
        help="torch threads of the local run (Ray actors always get 1 each)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "batch_throughput.json")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    args.work.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.work) if args.model == "tiny" else args.model
    manifest = write_shapes_manifest(args.work / "data", args.rows)
    runs = []
    for backend in args.backends.split(","):
        for group in (int(g) for g in args.groups.split(",")):
            workers = args.workers if backend == "ray" else 1
            threads = args.local_threads if backend == "local" else 1
            print(f"running {backend}, {workers} worker(s) x {threads} thread(s), group {group}")
            outdir = args.work / f"out-{backend}-{group}"
            runs.append(
                run_backend(manifest, outdir, backend, workers, model, overrides, threads, group)
            )
            print(json.dumps(runs[-1]), flush=True)
    payload = {
        "what": "lusd batch throughput on a shapes-world manifest",
        "rows": args.rows,
        "model": args.model or "shapes (shipped)",
        "overrides": overrides,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "load_average_at_end": os.getloadavg(),
        "runs": runs,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
