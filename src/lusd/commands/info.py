"""`lusd info`: what a model is, what its licence lets you ship, and what an edit costs."""

from __future__ import annotations

import json
from typing import Any

import typer

from lusd.commands import options as opt
from lusd.commands.common import cli_errors, console, err_console, quiet_libraries


def register(app: typer.Typer) -> None:
    app.command("info")(info)


@cli_errors
def info(
    model: opt.ModelArgument = None,
    model_config: opt.ModelConfig = None,
    allow_pickle: opt.AllowPickle = False,
    device: opt.Device = opt.AUTO,
    dtype: opt.Dtype = opt.AUTO,
    estimate: bool = typer.Option(
        True, "--estimate/--no-estimate", help="Time a few probe steps to estimate an edit."
    ),
    probe_steps: int = typer.Option(3, "--probe-steps", help="Steps the estimate times."),
    steps: opt.Steps = None,
    hour_price: opt.HourPrice = None,
    as_json: opt.Json = False,
) -> None:
    """Describe a model: licence and commercial use, weights, sizes, mask layers, cost.

    The estimate is measured on --device; --hour-price adds the cost per edit.
    """
    from lusd.cost import edit_cost
    from lusd.licensing import read_model_license
    from lusd.model_id import model_name, model_weights_hash

    if hour_price is not None:
        edit_cost(0.0, hour_price)  # a negative price fails before loading
    model_license = read_model_license(model)  # so does a malformed card
    quiet_libraries()
    from lusd.config import EditConfig
    from lusd.loading import load_pipeline

    pipe = load_pipeline(model, device, dtype, allow_pickle, model_config)
    pipe.set_progress_bar_config(disable=True)
    report: dict[str, Any] = {"model": model_name(model), **model_license.to_dict()}
    report["weights_hash"] = model_weights_hash(model) or None
    report.update(_components(pipe))
    defaults = EditConfig().to_dict()
    changed = {k: v for k, v in pipe.default_config.to_dict().items() if defaults[k] != v}
    report["default_config"] = changed
    config = pipe.resolve_config("lusd", None, {} if steps is None else {"num_steps": steps})
    if estimate:
        from lusd.cost import estimate_edit_seconds

        timing = estimate_edit_seconds(pipe, config, probe_steps)
        report["estimate"] = timing.to_dict()
        if hour_price is not None:
            report["cost"] = edit_cost(timing.seconds_per_edit, hour_price).to_dict()
    elif hour_price is not None:
        err_console.print("[yellow]note:[/] --hour-price needs the estimate (drop --no-estimate)")
    if not model_license.known:
        err_console.print(f"[yellow]warning:[/] {model_license.note}")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report, model is None)


def _components(pipe: Any) -> dict[str, Any]:
    from lusd.attention import attention_factors

    layers = pipe.mask_layers
    family = pipe.family
    params = {
        name: {
            "class": type(getattr(pipe, name)).__name__,
            "parameters": sum(p.numel() for p in getattr(pipe, name).parameters()),
        }
        for name in family.weighted
    }
    latent = pipe.unet.config.sample_size  # at the native size
    return {
        "family": family.name,
        "family_name": family.title,
        "components": params,
        "parameters": sum(c["parameters"] for c in params.values()),
        "scheduler": type(pipe.scheduler).__name__,
        "prediction_type": pipe.scheduler.config.prediction_type,
        "native_size": pipe.native_size,
        "size_multiple": pipe.size_multiple,
        "mask": {
            "cross_factor": layers.cross_factor,
            "cross_layers": len(layers.cross),
            "self_factor": layers.self_factor,
            "self_layers": len(layers.self_),
            "native_latent": latent,
            "cross_grid": max(latent // layers.cross_factor, 1),
            "self_grid": max(latent // layers.self_factor, 1),
            "attention_factors": sorted(
                {factor for factor, _ in attention_factors(pipe.unet).values()}
            ),
        },
    }


def _print(report: dict[str, Any], shipped: bool) -> None:
    out = console.print
    out(f"model: {report['model']}{' (shipped)' if shipped else ''}")
    out(f"  family: {report['family_name']}")
    where = report["license_source"]
    out(f"  licence: {report['license']} ({report['license_name']}), from {where}")
    out(f"  commercial use: {report['commercial_use']} ({report['license_note']})")
    weights = report["weights_hash"] or "unknown (no local copy)"
    out(f"  weights: {weights} (sha256 of the weight files, first 12 hex digits)")
    for name, part in report["components"].items():
        out(f"  {name}: {part['class']}, {part['parameters']:,} parameters")
    out(f"  parameters: {report['parameters']:,} in all")
    out(f"  scheduler: {report['scheduler']}, {report['prediction_type']}")
    out(f"  native size: {report['native_size']} px, sides multiple of {report['size_multiple']}")
    mask = report["mask"]
    cross, self_ = mask["cross_grid"], mask["self_grid"]
    levels = ", ".join(f"latent/{factor}" for factor in mask["attention_factors"])
    out(
        f"  mask: cross-attention at latent/{mask['cross_factor']} ({mask['cross_layers']} layers),"
        f" self-attention at latent/{mask['self_factor']} ({mask['self_layers']} layers);"
        f" {cross}x{cross} and {self_}x{self_} at the native {mask['native_latent']}x"
        f"{mask['native_latent']} latent (attention at {levels})"
    )
    changed = report["default_config"]
    out(f"  default config: {json.dumps(changed) if changed else 'the paper values'}")
    timing = report.get("estimate")
    if timing:
        out(
            f"  estimated time per edit: {timing['seconds_per_edit']:.2f} s for "
            f"{timing['num_steps']} steps on {timing['device']} at {timing['image_size']} px "
            f"(estimate from {timing['probe_steps']} probe steps: "
            f"{timing['seconds_per_step']:.3f} s/step + {timing['fixed_seconds']:.2f} s fixed)"
        )
    cost = report.get("cost")
    if cost:
        out(
            f"  estimated cost: {cost['per_edit']:.5f} per edit, {cost['per_1000']:.2f} per "
            f"1,000 images at {cost['hour_price']:g} per hour"
        )
