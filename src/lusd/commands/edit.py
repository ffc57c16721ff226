"""`lusd edit` and `lusd info`."""

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
    app.command("info")(info)


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
) -> None:
    """Edit IMAGE so that it shows --target, changing only what the edit concerns."""
    from lusd.images import load_image, output_format, save_image

    output = output or default_output(image)
    for path in (output, save_mask):
        if path is not None:
            output_format(path)
    if output.resolve() == image.resolve():
        raise ImageInputError(f"{output}: refusing to overwrite the input image")
    overrides = parse_overrides(settings)
    if steps is not None:
        overrides["num_steps"] = steps
    if raw:
        overrides["paste_back"] = False
    picture = load_image(image, max_pixels)  # fail on a bad image before loading the model

    quiet_libraries()
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
    save_image(result.images[0], output, metadata)
    if save_mask is not None:
        save_image(result.masks[0], save_mask)
    stats = result.stats
    words = ", ".join(result.focus_words) or "(none: global edit)"
    console.print(
        f"wrote [bold]{output}[/] · focus: {words} · "
        f"{stats['iterations']} iterations, {stats['unet_calls']} UNet calls, "
        f"{stats['filter_retries']} filter retries, {stats['seconds']:.1f} s"
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


@cli_errors
def info(
    model: str = typer.Argument(None, help=MODEL_HELP),
    model_config: Path = typer.Option(
        None, "--model-config", help="Diffusers config folder for a single-file checkpoint."
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickled weights."),
) -> None:
    """Describe a model: components, sizes, the layers the LUSD mask reads, its default config."""
    quiet_libraries()
    from lusd.config import EditConfig
    from lusd.loading import load_pipeline

    pipe = load_pipeline(model, "cpu", "float32", allow_pickle, model_config)
    layers = pipe.mask_layers
    params = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("unet", "vae", "text_encoder")
    }
    defaults = EditConfig().to_dict()
    changed = {k: v for k, v in pipe.default_config.to_dict().items() if defaults[k] != v}
    console.print(f"model: {model or 'shapes (shipped)'}")
    for name, count in params.items():
        console.print(f"  {name}: {type(getattr(pipe, name)).__name__}, {count:,} parameters")
    console.print(
        f"  scheduler: {type(pipe.scheduler).__name__}, {pipe.scheduler.config.prediction_type}"
    )
    console.print(f"  native size: {pipe.native_size} px, sides multiple of {pipe.size_multiple}")
    console.print(
        f"  mask: cross-attention at latent/{layers.cross_factor} ({len(layers.cross)} layers), "
        f"self-attention at latent/{layers.self_factor} ({len(layers.self_)} layers)"
    )
    console.print(f"  default config: {json.dumps(changed) if changed else 'the paper values'}")
