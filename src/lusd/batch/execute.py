"""Worker side of a job: bytes in, encoded PNG bytes out (same code for local and Ray).

Workers never touch OUTDIR or the journal: they get the input image's bytes and
return the edited image and mask as PNG bytes, so a Ray worker on another machine
needs no shared file system.
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
    from lusd.images import encode_image

    start = time.perf_counter()
    try:
        image = decode_image(image_bytes, os.path.basename(job.image))
        record = run_edit(pipe, job.request(image))
        image_png = record.encode("PNG")
        mask_png = encode_image(record.mask.convert("L"), "PNG")
    except LUSDError as exc:
        return JobOutput(
            job.id, False, time.perf_counter() - start, error=_line(exc), worker=worker_name()
        )
    except Exception as exc:  # a bad row must fail alone, whatever went wrong
        log.debug("job %s failed", job.id, exc_info=True)  # LUSD_DEBUG=1 shows it
        return JobOutput(
            job.id, False, time.perf_counter() - start, error=_line(exc), worker=worker_name()
        )
    return JobOutput(
        job.id,
        True,
        time.perf_counter() - start,
        image_png=image_png,
        mask_png=mask_png,
        stats=_plain({**record.stats, "focus_words": record.focus_words}),
        worker=worker_name(),
        disclosure=record.disclosure,
    )


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
