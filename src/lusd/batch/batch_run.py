"""One ``lusd batch`` run's state: its options, its summary, and ``BatchRun``, the single
journal writer that every backend (the local loop, ``ray_runner``) reports to."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusd.batch.execute import JobOutput, decode_image
from lusd.batch.jobs import JobSpec
from lusd.batch.journal import Done, Journal
from lusd.batch.manifest import RowError
from lusd.batch.outdir import output_paths, sha256_bytes
from lusd.batch.review import needs_review
from lusd.errors import ImageInputError
from lusd.files import atomic_write

log = logging.getLogger(__name__)

#: progress(finished_so_far, total_to_run, job_id, ok); first called with 0 before any work
Progress = Callable[[int, int, str, bool], None]


@dataclass
class BatchOptions:
    manifest: Path
    outdir: Path
    model: str | None = None
    preset: str = "lusd"
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    rerun_changed: bool = False
    max_attempts: int = 3
    backend: str = "local"
    workers: int = 1
    address: str | None = None
    device: str | None = None
    dtype: str | None = None
    allow_pickle: bool = False
    threads: int | None = None
    model_config: str | None = None  # diffusers config folder for a single-file checkpoint
    oracle: bool | None = None  # None: on when the model is the shipped shapes model
    #: refuse a model whose licence forbids commercial use (or the manifest's header says so)
    require_commercial: bool = False
    c2pa_cert: str | None = None  # with c2pa_key: sign C2PA Content Credentials
    c2pa_key: str | None = None
    hour_price: float | None = None  # price of a machine hour, for the report's cost per image
    #: folders besides the manifest's own that rows may name images in
    allow_dirs: tuple[Path, ...] = ()
    #: rows with a region are edited on a crop around it (False: the whole picture)
    crop: bool = True
    #: candidates per row (a row's ``candidates`` column, then the manifest's header, win)
    candidates: int = 1
    #: judge every row and flag those scoring below this for a person (None: no flags)
    review_threshold: float | None = None
    #: rows with one config run together, up to this many per pipeline call
    group: int = 1


@dataclass(frozen=True)
class RowFailure:
    """A row that ran in this batch and failed, with the reason."""

    line: int
    row_id: str
    error: str


@dataclass
class BatchSummary:
    total_rows: int
    bad_rows: list[RowError]
    to_run: int
    done: int = 0
    failed: int = 0
    skipped_done: int = 0
    gave_up: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    #: rows that failed in this run, with the reason
    failures: list[RowFailure] = field(default_factory=list)
    seconds: float = 0.0
    #: the whole batch's review line (``review.ReviewCounts.line``) when it has a threshold
    review: str = ""
    #: things the user should know that are not row failures
    notes: list[str] = field(default_factory=list)

    @property
    def edits_per_minute(self) -> float:
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0


class BatchRun:
    """One invocation of ``lusd batch`` against one OUTDIR."""

    def __init__(
        self, opts: BatchOptions, journal: Journal, jobs: list[JobSpec], signer: Any = None
    ) -> None:
        self.opts = opts
        self.signer = signer
        self.journal = journal
        self.outdir = opts.outdir
        self.jobs = {j.id: j for j in jobs}
        self._inputs: dict[str, bytes] = {}
        #: the rows that failed in this run, in the order they failed
        self.failures: list[RowFailure] = []
        self.oracle = opts.oracle if opts.oracle is not None else opts.model is None

    def read_input(self, job: JobSpec) -> bytes:
        """The input image's bytes (kept until the job is committed, for its metrics)."""
        try:
            data = Path(job.image).read_bytes()
        except OSError as exc:
            raise ImageInputError(f"cannot read {job.image}: {exc.strerror}") from None
        self._inputs[job.id] = data
        return data

    def start(self, job: JobSpec, worker: str = "") -> None:
        self.journal.start(job.id, worker)

    def commit(self, job: JobSpec, out: JobOutput) -> bool:
        """Record a worker's output; True when the job is done."""
        data = self._inputs.pop(job.id, b"")
        if not out.ok:
            return self._fail(job, out.error, out.seconds)
        rel_img, rel_mask = output_paths(job.id)
        try:
            metrics = self._metrics(job, data, out)
            if self.signer is not None:
                signed = self.signer.sign(out.image_png, "image/png", out.disclosure, data, rel_img)
                out = dataclasses.replace(out, image_png=signed)
            atomic_write(self.outdir / rel_img, out.image_png)
            atomic_write(self.outdir / rel_mask, out.mask_png)
        except Exception as exc:  # disk full, bad worker output, ...
            log.debug("recording %s failed", job.id, exc_info=True)
            return self._fail(job, f"{type(exc).__name__}: {exc}", out.seconds)
        self.journal.finish(
            Done(
                job_id=job.id,
                output=rel_img,
                mask=rel_mask,
                output_sha256=sha256_bytes(out.image_png),
                mask_sha256=sha256_bytes(out.mask_png),
                seconds=out.seconds,
                stats=out.stats,
                metrics=metrics,
                worker=out.worker,
                judge_score=out.judge_score,
                needs_review=needs_review(out.judge_score, self.opts.review_threshold),
            )
        )
        return True

    def _fail(self, job: JobSpec, error: str, seconds: float) -> bool:
        self.journal.fail(job.id, error, seconds)
        self.failures.append(RowFailure(job.line, job.id, error))
        return False

    def _metrics(self, job: JobSpec, data: bytes, out: JobOutput) -> dict[str, float]:
        from lusd.eval.metrics import pixel_metrics

        edited = decode_image(out.image_png, "edited image")
        mask = decode_image(out.mask_png, "mask").convert("L")
        if not data:
            return {}
        source = decode_image(data, job.image)
        metrics = pixel_metrics(source, edited, mask, job.config.mask_threshold)
        if self.oracle:
            from lusd.eval.oracle import oracle_metrics

            metrics.update(oracle_metrics(source, edited, job.target_prompt, job.source_prompt))
        return metrics
