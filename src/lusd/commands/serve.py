"""`lusd serve`: the web app for people who would rather not use a terminal."""

from __future__ import annotations

import ipaddress
import logging
import shutil

import typer

from lusd.commands import options as opt
from lusd.commands.common import cli_errors, console, err_console, quiet_libraries

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli_errors
def serve(
    model: opt.Model = None,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    share: bool = typer.Option(
        False, "--share/--no-share", help="Make a public gradio.live link (off by default)."
    ),
    device: opt.Device = opt.AUTO,
    dtype: opt.Dtype = opt.AUTO,
    steps: opt.Steps = None,
    max_queue: int = typer.Option(8, "--max-queue", min=1, help="Edits allowed to wait."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Edits run at once."),
    max_file_size: str = typer.Option(
        "10mb", "--max-file-size", help="Upload size limit; larger files are refused unread."
    ),
    max_pixels: opt.MaxPixels = opt.SERVE_MAX_PIXELS,
    allow_pickle: opt.AllowPickle = False,
    model_config: opt.ModelConfig = None,
    require_commercial: opt.RequireCommercial = False,
) -> None:
    """Start the web app: upload a picture, describe the change, press Edit.

    --steps are the iterations at strength 3 (the other strengths scale from them).
    """
    from lusd.licensing import license_for
    from lusd.licensing import require_commercial as check_license
    from lusd.model_id import model_name

    model_license = license_for(model, strict=require_commercial)
    if require_commercial:  # before loading anything
        check_license(model_license, model_name(model))
    quiet_libraries()
    logging.getLogger("lusd").setLevel(logging.INFO)
    from lusd.inputs import check_int
    from lusd.loading import load_pipeline
    from lusd.shapes import EXAMPLES_DIR
    from lusd.web.editing import AppSettings

    check_int(port, "--port", 1, 65535)
    settings = AppSettings(  # checks the limits before the model loads
        max_file_size=max_file_size,
        max_pixels=max_pixels,
        concurrency=concurrency,
        max_queue=max_queue,
        base_overrides={"num_steps": steps} if steps else {},
        model_name=model_name(model),
        examples_dir=EXAMPLES_DIR if model is None else None,
        model_license=model_license,
        require_commercial=require_commercial,
    )
    with console.status("loading model..."):
        pipe = load_pipeline(model, device, dtype, allow_pickle, model_config)
    pipe.set_progress_bar_config(disable=True)
    from lusd.web.app import build_app, launch, make_temp_dir

    workdir = make_temp_dir()
    demo = build_app(pipe, settings, workdir)
    if not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach it")
    if share:
        err_console.print("[yellow]warning:[/] --share makes the app public on the internet")
    console.print(f"open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port} (Ctrl+C stops)")
    try:
        launch(demo, settings, host=host, port=port, share=share, block=True)
    except KeyboardInterrupt:  # Ctrl+C is the normal way to stop a server
        console.print("stopped")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # uploads and results of this run
