"""The gradio page of the web app: layout, event handlers, queue and launch."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from lusd.errors import ImageInputError, LUSDError
from lusd.images import check_image_file, load_image
from lusd.web.editing import (
    DEFAULT_STRENGTH,
    MAX_VARIANTS,
    STRENGTHS,
    AppSettings,
    Editor,
    SessionResult,
    check_file_size,
    list_examples,
    new_seed,
    painted_region,
    plain_message,
    too_large_message,
)

log = logging.getLogger(__name__)

TITLE = "LUSD — local image editing"
INTRO = (
    "**1.** Upload a picture (or pick an example below). **2.** Say what it shows (optional) "
    "and what it should become. **3.** Press **Edit**. Only the part that your words change "
    "is edited; the rest of the picture stays as it was."
)
UNEXPECTED = "The edit failed unexpectedly. Try again, or go back to an earlier result below."
BAD_UPLOAD = "This file is not a picture the app can read. Use a PNG, JPEG or WebP image."
CSS = """
#lusd-input img, #lusd-compare img, #lusd-gallery img { image-rendering: pixelated; }
#lusd-input img { width: 100%; height: 100%; object-fit: contain; }
#lusd-status { min-height: 2.5em; }
"""
_PROGRESS = gr.Progress()  # a marker: gradio injects the real tracker per call
#: The region editor's value before anything is uploaded or painted (API callers may omit it).
_NOTHING_PAINTED = {"background": None, "layers": [], "composite": None}


def make_temp_dir() -> Path:
    """A fresh private folder for uploads and results; gradio serves files from it only."""
    folder = Path(tempfile.mkdtemp(prefix="lusd-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples-cache")
    return folder


def _plain_upload_errors(component: gr.Image, settings: AppSettings) -> gr.Image:
    """Check an upload's header before anything decodes it, and turn an unreadable upload
    into a plain message instead of a generic "Error".

    (It wraps the instance's method: a gr.Image subclass would make gradio write a .pyi.)
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        path, url = getattr(payload, "path", None), str(getattr(payload, "url", None) or "")
        if url.startswith("data:") and len(url) * 3 // 4 > settings.max_file_bytes:
            message = too_large_message(settings)
            raise gr.Error(message, title="Cannot use the picture", print_exception=False)
        if path and not url.startswith("data:"):
            try:
                check_file_size(path, settings)  # gradio's upload route checks it too
                check_image_file(path, settings.max_pixels)  # reads the header only
            except ImageInputError as error:
                log.info("refused an upload: %s", error)
                too_big = "pixels" in str(error) or "larger than" in str(error)
                message = plain_message(error, path) if too_big else BAD_UPLOAD  # or broken
                title = "Cannot use the picture"
                raise gr.Error(message, title=title, print_exception=False) from None
        try:
            return original(payload)
        except Exception:
            log.info("rejected an upload", exc_info=True)
            title = "Cannot read the picture"
            raise gr.Error(BAD_UPLOAD, title=title, print_exception=False) from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


class _Stopped(Exception):
    """Raised from the progress callback when the user pressed Stop."""


class StopRequests:
    """Which sessions have an edit running, and which of those were asked to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str | None] = set()
        self._stopping: set[str | None] = set()

    def begin(self, session: str | None) -> None:
        with self._lock:
            self._running.add(session)
            self._stopping.discard(session)

    def end(self, session: str | None) -> None:
        with self._lock:
            self._running.discard(session)
            self._stopping.discard(session)

    def request(self, session: str | None) -> bool:
        """Ask the session's running edit to stop; False if it has none."""
        with self._lock:
            if session not in self._running:
                return False
            self._stopping.add(session)
            return True

    def requested(self, session: str | None) -> bool:
        return session in self._stopping


def _session(request: gr.Request | None) -> str | None:
    """The browser session an event came from (None when called outside a request)."""
    return request.session_hash if request else None


def _view(record: SessionResult, show_mask: bool) -> tuple[str, str]:
    """(before, after) for the comparison slider; "after" shows the mask when asked."""
    return record.input_path, record.overlay_path if show_mask else record.result_path


def _paint_on(image_path: str | None) -> dict | None:
    """The region editor shows the uploaded picture to paint on (nothing painted yet).

    The picture goes as pixels: gradio refuses to serve an upload's path back to another
    component once that file is cached for an earlier session."""
    if not image_path:
        return None
    try:
        picture = load_image(image_path)
    except LUSDError:
        return None  # the upload itself reports the problem
    return {"background": picture, "layers": [], "composite": None}


def _gallery(history: list[SessionResult]) -> list[tuple[str, str]]:
    return [(r.result_path, r.caption) for r in reversed(history)]


def _layout(settings: AppSettings, examples: list[tuple[str, str, str]]) -> SimpleNamespace:
    """Create the page's components (inside an open Blocks) and return them by name."""
    ui = SimpleNamespace()
    gr.Markdown(f"# {TITLE}\n{INTRO}")
    ui.history = gr.State([])
    ui.current = gr.State(None)
    limit = settings.max_prompt_chars
    with gr.Row():
        with gr.Column():
            ui.image = _plain_upload_errors(
                gr.Image(
                    label="Your picture",
                    type="filepath",
                    image_mode=None,
                    format="png",
                    sources=["upload", "clipboard"],
                    height=300,
                    elem_id="lusd-input",
                ),
                settings,
            )
            ui.source = gr.Textbox(
                label="What the picture shows (optional)",
                placeholder="a red circle",
                max_length=limit,
                elem_id="lusd-source",
            )
            ui.target = gr.Textbox(
                label="What it should become",
                placeholder="a red circle and a blue square",
                max_length=limit,
                elem_id="lusd-target",
            )
            ui.focus = gr.Textbox(
                label="Focus words (change them if needed)",
                info="Filled in from the two descriptions: the words the edit is about.",
                max_length=limit,
                elem_id="lusd-focus",
            )
            with gr.Accordion("Where to edit (optional)", open=False, elem_id="lusd-where"):
                ui.region = gr.ImageEditor(
                    value=_NOTHING_PAINTED,
                    label="Paint over the part that may change (clear it: automatic)",
                    type="numpy",
                    image_mode="RGBA",
                    sources=[],
                    transforms=[],
                    layers=False,
                    brush=gr.Brush(colors=["#ff00c8"], color_mode="fixed", default_size=8),
                    eraser=gr.Eraser(default_size=8),
                    format="png",
                    height=300,
                    elem_id="lusd-region",
                )
                ui.box = gr.Textbox(
                    value="",
                    label="…or a box x0,y0,x1,y1 (pixels, or fractions of width and height)",
                    placeholder="0.5,0,1,0.5",
                    max_length=100,
                    elem_id="lusd-box",
                )
            with gr.Row():
                ui.strength = gr.Slider(
                    min(STRENGTHS),
                    max(STRENGTHS),
                    value=DEFAULT_STRENGTH,
                    step=1,
                    label="Strength",
                    info="1 = subtle and quick, 5 = strong and slower",
                    elem_id="lusd-strength",
                )
                ui.seed = gr.Number(
                    value=0, precision=0, minimum=0, label="Seed", elem_id="lusd-seed"
                )
                ui.variants = gr.Radio(
                    list(range(1, MAX_VARIANTS + 1)),
                    value=1,
                    label="Variants",
                    info="Several seeds at once; the model's judge shows the best first",
                    elem_id="lusd-variants",
                )
            with gr.Row():
                ui.run = gr.Button("Edit", variant="primary", elem_id="lusd-edit")
                ui.again = gr.Button("Try again (new seed)", elem_id="lusd-again")
                ui.stop = gr.Button("Stop", variant="stop", elem_id="lusd-stop")
        with gr.Column():
            ui.compare = gr.ImageSlider(
                label="Before / after (drag the handle)",
                type="filepath",
                format="png",
                interactive=False,
                height=300,
                max_height=300,
                elem_id="lusd-compare",
            )
            ui.status = gr.Markdown("Ready.", elem_id="lusd-status")
            with gr.Row():
                ui.show_mask = gr.Checkbox(
                    label="Show the edited area (mask)", value=False, elem_id="lusd-mask"
                )
                ui.download = gr.DownloadButton(
                    "Download result (PNG with its settings)", size="md", elem_id="lusd-download"
                )
            ui.further = gr.Button("Edit this result further", size="md", elem_id="lusd-further")
            ui.gallery = gr.Gallery(
                label="Your results in this session (click one to go back to it)",
                columns=4,
                fit_columns=False,
                object_fit="contain",
                height=220,
                allow_preview=False,
                interactive=False,
                format="png",
                elem_id="lusd-gallery",
            )
    if examples:
        gr.Examples(
            examples=[list(row) for row in examples],
            inputs=[ui.image, ui.source, ui.target],
            label="Examples from the shapes world (click one to load it)",
        )
    return ui


def build_app(
    pipe: Any, settings: AppSettings | None = None, workdir: Path | None = None
) -> gr.Blocks:
    """The Blocks app around a loaded pipeline (anything with the LUSDPipeline call contract).

    ``workdir`` holds uploads and results; without one, :func:`make_temp_dir` makes a
    private folder and points gradio at it, so no other file can be served.
    """
    settings = settings or AppSettings()
    editor = Editor(pipe, settings, Path(workdir) if workdir else make_temp_dir())
    examples = list_examples(settings.examples_dir)
    editor.focus_preview("a circle", "a square")  # load the tagger now, not on first keystroke

    stops = StopRequests()

    def edit(
        image,
        source,
        target,
        focus,
        strength,
        seed,
        show_mask,
        history,
        painted,
        box,
        variants,
        request: gr.Request,
        progress=_PROGRESS,
    ):
        started = time.perf_counter()
        session = _session(request)
        steps_done = [0, 0]

        def report(step: int, total: int) -> None:
            steps_done[:] = step, total
            if stops.requested(session):
                raise _Stopped
            left = (time.perf_counter() - started) / max(step, 1) * (total - step)
            progress((step, total), desc=f"Editing, about {left:.0f} s left", unit="steps")

        progress(0, desc="Starting")
        try:
            stops.begin(session)
            strength = DEFAULT_STRENGTH if strength is None else strength
            region = painted_region(painted, box)
            record = editor.run(
                image, source, target, focus, strength, seed or 0, report, region, variants or 1
            )
        except _Stopped:
            done, total = steps_done
            status = f"Stopped after {done} of {total} steps; the picture was not changed."
            if not done:
                status = "Stopped before the first step; the picture was not changed."
            return (gr.skip(),) * 2 + (status,) + (gr.skip(),) * 4
        except LUSDError as error:
            message = plain_message(error)
            raise gr.Error(message, title="Cannot edit", print_exception=False) from None
        except Exception:
            log.exception("edit failed")
            raise gr.Error(UNEXPECTED, print_exception=False) from None
        finally:
            stops.end(session)
        made = list(reversed(record.variants)) or [record]  # the best shows first
        history = (list(history or []) + made)[-settings.history_size :]
        gallery = _gallery(history)
        view = _view(record, show_mask)
        return view, record.result_path, record.summary(), history, gallery, record, record.seed

    def try_again(
        image,
        source,
        target,
        focus,
        strength,
        show_mask,
        history,
        painted,
        box,
        variants,
        request: gr.Request,
        progress=_PROGRESS,
    ):
        seed = new_seed()
        args = (image, source, target, focus, strength, seed, show_mask, history, painted, box)
        return edit(*args, variants, request, progress)

    def stop(request: gr.Request) -> str:
        if stops.request(_session(request)):
            return "Stopping…"
        return "Nothing is running."

    def toggle_mask(show_mask: bool, current: SessionResult | None):
        return _view(current, show_mask) if current else gr.skip()

    def pick(history: list[SessionResult], show_mask: bool, evt: gr.SelectData):
        ordered = list(reversed(history or []))
        if evt.index is None or not 0 <= evt.index < len(ordered):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        record = ordered[evt.index]
        return _view(record, show_mask), record.result_path, f"Back to: {record.summary()}", record

    def reuse(current: SessionResult | None):
        if current is None:
            raise gr.Error("There is no result yet: run an edit first.", print_exception=False)
        return current.result_path, current.target_prompt, "Continuing from this result."

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        ui = _layout(settings, examples)
        outputs = [ui.compare, ui.download, ui.status, ui.history, ui.gallery, ui.current, ui.seed]
        common = [ui.image, ui.source, ui.target, ui.focus, ui.strength]
        queued = {"concurrency_limit": settings.concurrency, "concurrency_id": "edit"}
        instant = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
        extras = [ui.region, ui.box, ui.variants]
        ui.run.click(
            edit,
            [*common, ui.seed, ui.show_mask, ui.history, *extras],
            outputs,
            api_name="edit",
            **queued,
        )
        ui.again.click(
            try_again,
            [*common, ui.show_mask, ui.history, *extras],
            outputs,
            api_name="try_again",
            **queued,
        )
        ui.image.change(_paint_on, ui.image, ui.region, **instant)
        for box in (ui.source, ui.target):
            box.change(editor.focus_preview, [ui.source, ui.target], ui.focus, **instant)
        ui.show_mask.change(toggle_mask, [ui.show_mask, ui.current], ui.compare, **instant)
        ui.gallery.select(
            pick,
            [ui.history, ui.show_mask],
            [ui.compare, ui.download, ui.status, ui.current],
            **instant,
        )
        ui.stop.click(stop, None, ui.status, api_name="stop", queue=False, show_progress="hidden")
        ui.further.click(reuse, ui.current, [ui.image, ui.source, ui.status], **instant)
        gr.api(editor.focus_preview, api_name="focus_words")
    demo.queue(max_size=settings.max_queue, default_concurrency_limit=settings.concurrency)
    return demo


def launch(
    demo: gr.Blocks,
    settings: AppSettings,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
) -> str:
    """Serve ``demo`` and return its local URL; with ``block`` False it returns at once."""
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        max_file_size=settings.max_file_bytes,
        show_error=False,
        quiet=True,
        footer_links=["api"],
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        theme=theme,
        css=CSS,
    )
    return url
