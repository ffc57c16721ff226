"""Batch driver: plan the run from manifest + journal, dispatch jobs, record results.

The driver is the only journal writer (``batch_run.BatchRun``). Backends (local loop here, Ray in
``ray_runner``) call ``BatchRun.start`` before a job runs and ``BatchRun.commit``
with the worker's output; ``commit`` writes both files atomically, then marks
the job done in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lusd.batch.batch_run import BatchOptions, BatchRun, BatchSummary, Progress
from lusd.batch.execute import JobOutput, LoadPipeline, PipelineFactory, execute_group
from lusd.batch.execute import worker_name as _worker_name
from lusd.batch.jobs import JobSpec, build_jobs, group_jobs, model_key
from lusd.batch.journal import Journal
from lusd.batch.manifest import RowError, read_manifest
from lusd.batch.metrics_files import write_metrics_files
from lusd.batch.outdir import (
    check_outdir_free,
    open_journal,
    remove_temp_files,
    run_lock,
    sha256_bytes,
    sha256_file,
)
from lusd.batch.review import check_review_threshold, review_counts
from lusd.config import model_default_config, preset_config
from lusd.credentials import load_signer
from lusd.edit_path import check_candidates
from lusd.errors import ConfigError, ImageInputError, LUSDError
from lusd.inputs import check_int, check_number, check_output_folder, check_seed
from lusd.licensing import ModelLicense, license_for, require_commercial
from lusd.model_id import model_name

log = logging.getLogger(__name__)

#: The most rows ``--group`` runs in one pipeline call.
MAX_GROUP = 64


def plan(
    opts: BatchOptions, journal: Journal, jobs: list[JobSpec], summary: BatchSummary
) -> list[JobSpec]:
    """Sync the manifest's jobs into the journal and return those to run now."""
    remove_temp_files(opts.outdir)
    todo: list[JobSpec] = []
    for job in jobs:
        row = journal.job(job.id)
        if row is None:
            journal.upsert_job(job, reset=False)
            todo.append(job)
            continue
        state, changed = row["state"], row["config_hash"] != job.config_hash
        if state == "done":
            unjudged = job.judge and row["judge_score"] is None
            if changed and opts.rerun_changed:
                journal.upsert_job(job, reset=True)
                todo.append(job)
            elif changed:
                summary.changed.append(job.id)
                summary.skipped_done += 1
            elif unjudged:  # done before review flags were asked for: judged now
                journal.upsert_job(job, reset=False)
                journal.set_pending(job.id, "unjudged")
                todo.append(job)
            elif _outputs_intact(opts.outdir, row):
                summary.skipped_done += 1
            else:
                journal.upsert_job(job, reset=False)
                journal.set_pending(job.id, "output-missing")
                todo.append(job)
            continue
        journal.upsert_job(job, reset=changed)
        if state == "running":
            journal.set_pending(job.id, "interrupted")
            todo.append(job)
        elif state == "failed" and not changed and row["failures"] >= opts.max_attempts:
            summary.gave_up.append(job.id)
        else:
            todo.append(job)
    return todo


def _outputs_intact(outdir: Path, row: Any) -> bool:
    return all(
        row[col] and sha256_file(outdir / row[col]) == row[sha]
        for col, sha in (("output", "output_sha256"), ("mask", "mask_sha256"))
    )


def prepare(opts: BatchOptions, model: str) -> tuple[list[JobSpec], list[RowError]]:
    """Read and validate the manifest; every bad row is returned, none raised (unless strict).

    ``model`` is the journal's name of the model (``jobs.model_key``).
    """
    manifest = read_manifest(
        opts.manifest,
        default_seed=opts.seed,
        default_preset=opts.preset,
        allowed_dirs=opts.allow_dirs,
        default_candidates=opts.candidates,
    )
    if manifest.directives.get("require_commercial"):
        opts.require_commercial = True
    base = model_default_config(opts.model_config or opts.model)
    judge = opts.review_threshold is not None
    jobs, cfg_errors = build_jobs(manifest.rows, base, model, opts.overrides, opts.crop, judge)
    bad = sorted(manifest.errors + cfg_errors, key=lambda e: e.line)
    if bad and opts.strict:
        lines = "; ".join(str(e) for e in bad[:20])
        more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
        raise ConfigError(f"{len(bad)} bad row(s) in {opts.manifest.name}: {lines}{more}")
    return jobs, bad


def run_batch(
    opts: BatchOptions,
    pipeline_factory: PipelineFactory | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Run (or resume) the batch described by ``opts``; returns what happened."""
    opts.manifest = Path(opts.manifest).expanduser().resolve()
    opts.outdir = Path(opts.outdir).expanduser().resolve()
    if opts.backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {opts.backend!r}: use local or ray")
    check_options(opts)
    model = model_key(opts.model)
    jobs, bad = prepare(opts, model)
    model_license = _model_license(opts)
    signer = load_signer(opts.c2pa_cert, opts.c2pa_key)
    manifest_sha = read_manifest_sha(opts.manifest)
    factory = pipeline_factory or LoadPipeline(
        opts.model, opts.device, opts.dtype, opts.allow_pickle, opts.threads, opts.model_config
    )
    with run_lock(opts.outdir), _journal_errors(opts.outdir):
        journal = open_journal(opts.outdir, opts.manifest, manifest_sha)
        try:
            journal.set_meta(
                model=model,
                bad_rows=json.dumps([{"line": e.line, "message": e.message} for e in bad]),
                oracle=json.dumps(opts.oracle if opts.oracle is not None else opts.model is None),
                license=json.dumps(model_license.to_dict()),
                disclosure="xmp+c2pa" if signer is not None else "xmp",
            )
            if opts.hour_price is not None:
                journal.set_meta(hour_price=json.dumps(opts.hour_price))
            summary = BatchSummary(total_rows=len(jobs) + len(bad), bad_rows=bad, to_run=0)
            todo = plan(opts, journal, jobs, summary)
            summary.to_run = len(todo)
            journal.set_review_threshold(opts.review_threshold)
            run = BatchRun(opts, journal, jobs, signer)
            start = time.perf_counter()
            if todo:
                if progress:
                    progress(0, len(todo), "", True)  # planning done, work starts
                backend = _run_local if opts.backend == "local" else _run_ray
                backend(run, todo, factory, progress, summary)
            summary.failures = run.failures
            summary.seconds = time.perf_counter() - start
            counts = review_counts(journal.jobs(), len(bad), opts.review_threshold)
            summary.review = "" if counts is None else counts.line
            try:
                write_metrics_files(journal, opts.outdir)
            except OSError as error:  # every result is journaled: the files can wait
                summary.notes.append(
                    f"could not write metrics.csv and metrics.json ({error.strerror or error}); "
                    "the journal holds every result: run the batch again to write them"
                )
        finally:
            journal.close()
    return summary


def check_options(opts: BatchOptions) -> None:
    """One-line errors for option values no row could run with (before anything is read)."""
    check_seed(opts.seed, "--seed")
    check_int(opts.workers, "--workers", 1, 1024)
    check_int(opts.max_attempts, "--max-attempts", 1, 1000)
    check_candidates(opts.candidates)
    check_int(opts.group, "--group", 1, MAX_GROUP)
    if opts.review_threshold is not None:
        opts.review_threshold = check_review_threshold(opts.review_threshold)
    if opts.threads is not None:
        check_int(opts.threads, "--threads", 1, 1024)
    if opts.hour_price is not None:
        check_number(opts.hour_price, "--hour-price")
    check_output_folder(opts.outdir, "output folder (-o)")
    check_outdir_free(Path(opts.outdir).expanduser().absolute())
    if opts.model is not None:  # a folder or file here: its layout, pickles (workers load it)
        from lusd.loading import check_model_files  # imports torch

        check_model_files(Path(opts.model).expanduser(), opts.allow_pickle)
    # --preset, --steps and --set apply to every row: a bad value is one line, not N bad rows
    preset_config(
        opts.preset, model_default_config(opts.model_config or opts.model), **opts.overrides
    )


@contextlib.contextmanager
def _journal_errors(outdir: Path) -> Iterator[None]:
    """A journal that cannot be written (disk full, read-only) as one line; rerun resumes."""
    try:
        yield
    except sqlite3.Error as error:
        raise LUSDError(
            f"cannot write the batch journal in {outdir} ({error}); fix that (free space, "
            "permissions) and run the same command again to resume"
        ) from None


def _model_license(opts: BatchOptions) -> ModelLicense:
    """The model's licence; with ``require_commercial`` a refusal (before OUTDIR exists)."""
    model_license = license_for(opts.model, strict=opts.require_commercial)
    if opts.require_commercial:
        require_commercial(model_license, model_name(opts.model))
    return model_license


def read_manifest_sha(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def _run_local(
    run: BatchRun,
    todo: list[JobSpec],
    factory: PipelineFactory,
    progress: Progress | None,
    summary: BatchSummary,
) -> None:
    """Run ``todo`` in this process, ``--group`` rows of one config per pipeline call."""
    pipe = factory()
    name = _worker_name()
    finished = 0
    for group in group_jobs(todo, run.opts.group):
        outputs: dict[str, JobOutput] = {}
        ready: list[tuple[JobSpec, bytes]] = []
        for job in group:
            run.start(job, name)
            try:
                ready.append((job, run.read_input(job)))
            except ImageInputError as exc:
                outputs[job.id] = JobOutput(
                    job.id, False, 0.0, error=f"ImageInputError: {exc}", worker=name
                )
        if ready:
            jobs, images = zip(*ready, strict=True)
            for out in execute_group(pipe, list(jobs), list(images)):
                outputs[out.job_id] = out
        for job in group:
            ok = run.commit(job, outputs[job.id])
            summary.done += ok
            summary.failed += not ok
            finished += 1
            if progress:
                progress(finished, len(todo), job.id, ok)


def _run_ray(
    run: BatchRun,
    todo: list[JobSpec],
    factory: PipelineFactory,
    progress: Progress | None,
    summary: BatchSummary,
) -> None:
    from lusd.batch.ray_runner import run_on_ray  # imports ray: only for --backend ray

    run_on_ray(run, todo, factory, progress, summary)
