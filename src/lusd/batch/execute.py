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
from typing import Any, Protocol

from PIL import Image

from lusd.batch.jobs import JobSpec
from lusd.disclosure import EditDisclosure
from lusd.errors import LUSDError

log = logging.getLogger(__name__)


@dataclass
class EditResult:
    image: Image.Image
    mask: Image.Image
    stats: dict[str, Any] = field(default_factory=dict)


class Editor(Protocol):
    def __call__(self, image: Image.Image, job: JobSpec) -> EditResult: ...


#: Builds an Editor inside a worker (must be picklable for Ray).
EditorFactory = Callable[[], Editor]


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


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Bytes -> RGB PIL image, read as :func:`lusd.images.load_image` reads files (EXIF
    orientation, 16-bit, CMYK, alpha, pixel limit); ImageInputError if unreadable."""
    from lusd.images import load_image

    return load_image(data, name=name)


def encode_png(
    image: Image.Image, metadata: dict[str, str] | None = None, xmp: str | None = None
) -> bytes:
    from lusd.images import encode_image

    return encode_image(image, "PNG", metadata, xmp)


def job_disclosure(job: JobSpec, focus_words: list[str] | tuple[str, ...]) -> EditDisclosure:
    """The AI-edit disclosure of a job's output."""
    return EditDisclosure(
        model=job.model_name,
        weights_hash=job.weights_hash,
        method=job.config.method,
        preset=job.preset,
        source_prompt=job.source_prompt,
        target_prompt=job.target_prompt,
        focus=tuple(focus_words),
        seed=job.seed,
        steps=job.config.num_steps,
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(editor: Editor, job: JobSpec, image_bytes: bytes) -> JobOutput:
    """Run one job; every failure becomes an error line on the output, never an exception."""
    start = time.perf_counter()
    try:
        image = decode_image(image_bytes, os.path.basename(job.image))
        result = editor(image, job)
        meta = {
            "lusd:source_prompt": job.source_prompt,
            "lusd:target_prompt": job.target_prompt,
            "lusd:seed": str(job.seed),
            "lusd:preset": job.preset,
            "lusd:config_hash": job.config_hash,
        }
        focus = result.stats.get("focus_words") or list(job.focus or ())
        xmp = job_disclosure(job, focus).to_xmp()
        image_png = encode_png(result.image.convert("RGB"), meta, xmp)
        mask_png = encode_png(result.mask.convert("L"))
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
        stats=_plain(result.stats),
        worker=worker_name(),
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
class PipelineEditorFactory:
    """Loads ``lusd.loading.load_pipeline(model, ...)`` once, inside the worker."""

    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    allow_pickle: bool = False
    threads: int | None = None
    model_config: str | None = None

    def __call__(self) -> Editor:
        return PipelineEditor(
            self.model, self.device, self.dtype, self.allow_pickle, self.threads, self.model_config
        )


class PipelineEditor:
    """Editor backed by the real LUSD pipeline; the config is passed in full per job."""

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        threads: int | None = None,
        model_config: str | None = None,
    ) -> None:
        import torch

        from lusd.loading import load_pipeline

        if threads:
            torch.set_num_threads(threads)
        self.pipe = load_pipeline(
            model, device, dtype, allow_pickle, single_file_config=model_config
        )
        self.pipe.set_progress_bar_config(disable=True)

    def __call__(self, image: Image.Image, job: JobSpec) -> EditResult:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(job.seed)
        out = self.pipe(
            image,
            job.source_prompt,
            job.target_prompt,
            focus=list(job.focus) if job.focus else None,
            # job.config is already the fully resolved config (preset included);
            # preset "lusd" adds nothing on top of it, so it is used exactly.
            preset="lusd",
            config=job.config,
            generator=generator,
        )
        stats = dict(out.stats)
        stats["focus_words"] = list(out.focus_words)
        return EditResult(out.images[0], out.masks[0], stats)
