"""`lusd edit`: one image, one edit, its output with the AI-edit disclosure."""

from __future__ import annotations

from pathlib import Path

import typer

from lusd.commands import options as opt
from lusd.commands.common import (
    cli_errors,
    console,
    err_console,
    parse_overrides,
    quiet_libraries,
)
from lusd.errors import ConfigError, ImageInputError
from lusd.images import save_image
from lusd.inputs import check_seed


def register(app: typer.Typer) -> None:
    app.command("edit")(edit)


def default_output(image: Path) -> Path:
    return Path(f"{image.stem}.lusd.png")


@cli_errors
def edit(
    image: Path = typer.Argument(..., help="Input image (PNG, JPEG, WebP, ...)."),
    target: str = typer.Option(..., "--target", "-t", help="What the edited image should show."),
    source: str = typer.Option("", "--source", "-s", help="What the image shows now (optional)."),
    focus: list[str] = typer.Option(
        None, "--focus", help="Focus word(s); overrides automatic ones."
    ),
    model: opt.Model = None,
    model_config: opt.ModelConfig = None,
    preset: opt.Preset = "lusd",
    steps: opt.Steps = None,
    seed: opt.Seed = 0,
    candidates: opt.Candidates = 1,
    save_candidates: Path = typer.Option(
        None, "--save-candidates", help="Also write every candidate, with its score, here."
    ),
    device: opt.Device = opt.AUTO,
    dtype: opt.Dtype = opt.AUTO,
    output: Path = typer.Option(None, "--output", "-o", help="Output file (.png/.jpg/.webp)."),
    save_mask: Path = typer.Option(None, "--save-mask", help="Also write the mask here."),
    raw: bool = typer.Option(False, "--raw", help="Keep the decoded image; do not paste back."),
    region: Path = typer.Option(
        None, "--region", help="Mask image: white where the edit may change the picture."
    ),
    box: str = typer.Option(
        None, "--box", help="Region as x0,y0,x1,y1: pixels, or fractions of width and height."
    ),
    no_crop: opt.NoCrop = False,
    settings: opt.Settings = None,
    max_pixels: opt.MaxPixels = opt.DEFAULT_MAX_PIXELS,
    allow_pickle: opt.AllowPickle = False,
    require_commercial: opt.RequireCommercial = False,
    c2pa_cert: opt.C2PACert = None,
    c2pa_key: opt.C2PAKey = None,
) -> None:
    """Edit IMAGE so that it shows --target, changing only what the edit concerns."""
    from lusd.commands.common import check_commercial
    from lusd.config import model_default_config, preset_config
    from lusd.credentials import load_signer
    from lusd.edit_path import EditRequest, check_candidates
    from lusd.images import load_image, output_format
    from lusd.inputs import check_int, check_output_folder, check_prompt

    output = output or default_output(image)
    for path in (output, save_mask):
        if path is not None:
            output_format(path)
            check_output_folder(path.parent)
    seed = check_seed(seed, "--seed")
    check_candidates(candidates)
    if save_candidates is not None:
        check_output_folder(save_candidates, "--save-candidates folder")
    check_int(max_pixels, "--max-pixels", 1)
    if output.resolve() == image.resolve():
        raise ImageInputError(f"{output}: refusing to overwrite the input image")
    overrides = parse_overrides(settings)
    if steps is not None:
        overrides["num_steps"] = steps
    if raw:
        overrides["paste_back"] = False
    # the whole request is checked before the model loads
    config = preset_config(preset, model_default_config(model_config or model), **overrides)
    check_prompt(target)
    if require_commercial:
        check_commercial(model)
    signer = load_signer(c2pa_cert, c2pa_key)
    request = EditRequest(  # checks the region against the picture before the model loads
        load_image(image, max_pixels),
        source,
        target,
        config,
        preset=preset,
        seed=seed,
        focus=tuple(focus) if focus else None,
        region=_region(region, box),
        crop=not no_crop,
        num_candidates=candidates,
    )

    quiet_libraries()
    from lusd.loading import load_pipeline

    with console.status("loading model..."):
        pipe = load_pipeline(model, device, dtype, allow_pickle, model_config)
    pipe.set_progress_bar_config(disable=True)
    record = _run_with_progress(pipe, request)
    record.save(output, signer, image.read_bytes() if signer is not None else b"")
    if save_mask is not None:
        save_image(record.mask, save_mask)
    if save_candidates is not None:
        _save_candidates(record, save_candidates, image.stem)
    stats = record.stats
    words = ", ".join(record.focus_words) or "(none: global edit)"
    console.print(
        f"wrote [bold]{output}[/] · focus: {words} · "
        f"{stats['iterations']} iterations, {stats['unet_calls']} UNet calls, "
        f"{stats['filter_retries']} filter retries, {stats['seconds']:.1f} s · "
        f"AI edit disclosed (XMP{', C2PA signed' if signer else ''})"
    )
    if record.candidates:
        ranked = sorted(record.candidates, key=lambda c: -c.score)
        scores = ", ".join(f"seed {c.seed}: {c.score:.3f}" for c in ranked)
        console.print(f"best of {len(ranked)} candidates by the judge · {scores}")


def _save_candidates(record, folder: Path, stem: str) -> None:
    """Every candidate as ``<stem>.seed<S>.png`` (its settings name its seed and score)."""
    folder.mkdir(parents=True, exist_ok=True)
    for candidate in record.candidates or [record]:
        candidate.save(folder / f"{stem}.seed{candidate.seed}.png")


def _region(mask: Path | None, box: str | None):
    """The region of --region or --box (None: the whole picture)."""
    from lusd.regions import Region

    if mask is not None and box is not None:
        raise ConfigError("give --region or --box, not both")
    if mask is not None:
        return Region.from_mask(mask)
    return None if box is None else Region.from_box(box)


def _run_with_progress(pipe, request):
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lusd.edit_path import run_edit

    columns = (
        TextColumn("editing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("edit", total=request.config.num_steps)
        return run_edit(
            pipe, request, progress=lambda step, total: progress.update(task, completed=step)
        )
