"""Worker side of a job: bytes in, encoded PNG bytes out (same code for local and Ray).

Workers never touch OUTDIR or the journal: they get the input image's bytes and
return the edited image and mask as PNG bytes, so a Ray worker on another machine
needs no shared file system. :func:`execute_group` runs several jobs with one config in
one pipeline call (``lusd batch --group``); each gives what it gives alone.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from lusd.batch.jobs import JobSpec
from lusd.disclosure import EditDisclosure
from lusd.errors import LUSDError

log = logging.getLogger(__name__)

#: Loads the pipeline inside a worker (must be picklable for Ray); anything with the
#: LUSDPipeline call contract serves (the tests' fakes too).
PipelineFactory = Callable[[], Any]


@dataclass
class JobOutput:
    """What a worker sends back: PNG bytes or an error line."""

    job_id: str
    ok: bool
    seconds: float
    image_png: bytes = b""
    mask_png: bytes = b""
    stats: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    worker: str = ""
    #: what the output says about the edit (the driver signs C2PA credentials with it)
    disclosure: EditDisclosure | None = None
    #: the judge's score of the kept candidate (None: not judged)
    judge_score: float | None = None


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Bytes -> RGB PIL image, read as :func:`lusd.images.load_image` reads files (EXIF
    orientation, 16-bit, CMYK, alpha, pixel limit); ImageInputError if unreadable."""
    from lusd.images import load_image

    return load_image(data, name=name)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(pipe: Any, job: JobSpec, image_bytes: bytes) -> JobOutput:
    """Run one job on the edit path; every failure becomes an error line, never an exception."""
    from lusd.edit_path import run_edit

    start = time.perf_counter()
    try:
        image = decode_image(image_bytes, os.path.basename(job.image))
        record = run_edit(pipe, job.request(image))
        return _job_output(job, record, time.perf_counter() - start)
    except Exception as exc:  # a bad row must fail alone, whatever went wrong
        return _failed(job, exc, time.perf_counter() - start)


def execute_group(pipe: Any, jobs: list[JobSpec], images: list[bytes]) -> list[JobOutput]:
    """Run jobs that share one config in one :func:`lusd.edit_path.run_edits` call (edits of
    the same working size share every UNet pass); one output per job, in order.

    Each output is what :func:`execute` gives for its job alone, and each job still fails
    alone: a job whose image or request is bad fails before the call, and when the call
    itself raises, its jobs run again one by one. A grouped job's ``seconds`` is its share
    of the group's time.
    """
    from lusd.edit_path import run_edits

    if len(jobs) == 1:
        return [execute(pipe, jobs[0], images[0])]
    start = time.perf_counter()
    outputs: dict[str, JobOutput] = {}
    ready: list[tuple[JobSpec, bytes, Any]] = []
    for job, data in zip(jobs, images, strict=True):
        try:
            image = decode_image(data, os.path.basename(job.image))
            ready.append((job, data, job.request(image)))
        except Exception as exc:
            outputs[job.id] = _failed(job, exc, 0.0)
    if ready:
        try:
            records = run_edits(pipe, [request for _, _, request in ready])
        except Exception:  # one bad edit spoils the call: every job runs alone instead
            log.debug(
                "a group of %d jobs failed; running them one by one", len(ready), exc_info=True
            )
            for job, data, _ in ready:
                outputs[job.id] = execute(pipe, job, data)
        else:
            share = (time.perf_counter() - start) / len(ready)
            for (job, _, _), record in zip(ready, records, strict=True):
                try:
                    outputs[job.id] = _job_output(job, record, share)
                except Exception as exc:
                    outputs[job.id] = _failed(job, exc, share)
    return [outputs[job.id] for job in jobs]


def _job_output(job: JobSpec, record: Any, seconds: float) -> JobOutput:
    """The output of a finished edit: its image and mask as PNG bytes, its stats."""
    from lusd.images import encode_image

    return JobOutput(
        job.id,
        True,
        seconds,
        image_png=record.encode("PNG"),
        mask_png=encode_image(record.mask.convert("L"), "PNG"),
        stats=_plain({**record.stats, "focus_words": record.focus_words}),
        worker=worker_name(),
        disclosure=record.disclosure,
        judge_score=record.score,
    )


def _failed(job: JobSpec, exc: Exception, seconds: float) -> JobOutput:
    if not isinstance(exc, LUSDError):
        log.debug("job %s failed", job.id, exc_info=True)  # LUSD_DEBUG=1 shows it
    return JobOutput(job.id, False, seconds, error=_line(exc), worker=worker_name())


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:2000]


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
    """Keep only JSON-friendly stats (drops tensors and the like)."""
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float) for v in value
        ):
            out[key] = list(value)
    return out


@dataclass
class LoadPipeline:
    """Loads ``lusd.loading.load_pipeline(model, ...)`` once, inside the worker."""

    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    allow_pickle: bool = False
    threads: int | None = None
    model_config: str | None = None

    def __call__(self) -> Any:
        import torch

        from lusd.loading import load_pipeline

        if self.threads:
            torch.set_num_threads(self.threads)
        pipe = load_pipeline(
            self.model, self.device, self.dtype, self.allow_pickle, self.model_config
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe
