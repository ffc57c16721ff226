"""`lusd edit`: one image, one edit, its output with the AI-edit disclosure."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lusd.commands.common import (
    cli_errors,
    console,
    err_console,
    generator_for,
    parse_overrides,
    quiet_libraries,
)
from lusd.errors import ImageInputError
from lusd.images import DEFAULT_MAX_PIXELS

MODEL_HELP = "SD folder, hub id or .safetensors file (default: the shipped shapes model)."


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
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    model_config: Path = typer.Option(
        None, "--model-config", help="Diffusers config folder for a single-file checkpoint."
    ),
    preset: str = typer.Option("lusd", "--preset", "-p", help="lusd, dds, sds or an ablation."),
    steps: int = typer.Option(None, "--steps", help="Iterations (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same result."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, float16 or bfloat16."),
    output: Path = typer.Option(None, "--output", "-o", help="Output file (.png/.jpg/.webp)."),
    save_mask: Path = typer.Option(None, "--save-mask", help="Also write the mask here."),
    raw: bool = typer.Option(False, "--raw", help="Keep the decoded image; do not paste back."),
    settings: list[str] = typer.Option(None, "--set", help="EditConfig override KEY=VALUE."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Input pixel limit."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickled weights."),
    require_commercial: bool = typer.Option(
        False, "--require-commercial", help="Refuse a model whose licence forbids commercial use."
    ),
    c2pa_cert: Path = typer.Option(
        None, "--c2pa-cert", help="PEM certificate chain: sign C2PA Content Credentials."
    ),
    c2pa_key: Path = typer.Option(None, "--c2pa-key", help="PEM private key of --c2pa-cert."),
) -> None:
    """Edit IMAGE so that it shows --target, changing only what the edit concerns."""
    from lusd.commands.common import check_commercial
    from lusd.config import model_default_config, preset_config
    from lusd.credentials import load_signer
    from lusd.images import load_image, output_format, save_image
    from lusd.inputs import check_int, check_output_folder, check_prompt, check_seed

    output = output or default_output(image)
    for path in (output, save_mask):
        if path is not None:
            output_format(path)
            check_output_folder(path.parent)
    check_seed(seed, "--seed")
    check_int(max_pixels, "--max-pixels", 1)
    if output.resolve() == image.resolve():
        raise ImageInputError(f"{output}: refusing to overwrite the input image")
    overrides = parse_overrides(settings)
    if steps is not None:
        overrides["num_steps"] = steps
    if raw:
        overrides["paste_back"] = False
    # fail on a bad setting, prompt or image before loading the model
    preset_config(preset, model_default_config(model_config or model), **overrides)
    check_prompt(target)  # an empty target is refused by pipe.check_inputs, in its words
    if require_commercial:
        check_commercial(model)
    signer = load_signer(c2pa_cert, c2pa_key)
    picture = load_image(image, max_pixels)

    quiet_libraries()
    from lusd.disclosure import edit_disclosure
    from lusd.loading import load_pipeline

    with console.status("loading model..."):
        pipe = load_pipeline(model, device, dtype, allow_pickle, model_config)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.resolve_config(preset, None, overrides)
    pipe.check_inputs(source, target)
    result = _run_with_progress(
        pipe, picture, source, target, focus, preset, config, seed, max_pixels
    )
    metadata = {
        "lusd": json.dumps(
            {
                "source_prompt": source,
                "target_prompt": target,
                "focus": result.focus_words,
                "preset": preset,
                "seed": seed,
                "model": str(model or "shapes"),
                "config": result.stats["config"],
            }
        )
    }
    disclosure = edit_disclosure(
        model,
        method=config.method,
        preset=preset,
        source_prompt=source,
        target_prompt=target,
        focus=result.focus_words,
        seed=seed,
        steps=config.num_steps,
    )
    finish = None
    if signer is not None:
        source_bytes = image.read_bytes()

        def finish(data: bytes, mime: str) -> bytes:
            return signer.sign(data, mime, disclosure, source_bytes, output.name)

    save_image(result.images[0], output, metadata, xmp=disclosure.to_xmp(), finish=finish)
    if save_mask is not None:
        save_image(result.masks[0], save_mask)
    stats = result.stats
    words = ", ".join(result.focus_words) or "(none: global edit)"
    console.print(
        f"wrote [bold]{output}[/] · focus: {words} · "
        f"{stats['iterations']} iterations, {stats['unet_calls']} UNet calls, "
        f"{stats['filter_retries']} filter retries, {stats['seconds']:.1f} s · "
        f"AI edit disclosed (XMP{', C2PA signed' if signer else ''})"
    )


def _run_with_progress(pipe, picture, source, target, focus, preset, config, seed, max_pixels):
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("editing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("edit", total=config.num_steps)
        return pipe(
            picture,
            source,
            target,
            focus=focus or None,
            preset=preset,
            config=config,
            generator=generator_for(seed),
            callback=lambda step, total: progress.update(task, completed=step),
            max_pixels=max_pixels,
        )
