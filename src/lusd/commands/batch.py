"""`lusd batch`, `lusd eval` and `lusd report`: catalogue runs, their metrics and their report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lusd.commands import options as opt
from lusd.commands.common import cli_errors, console, err_console, parse_overrides

ReviewThreshold = Annotated[
    float | None,
    typer.Option(
        "--review-threshold",
        help="Judge every row and flag those scoring below this (0-1) for a person to review.",
    ),
]
Group = Annotated[
    int,
    typer.Option(
        "--group",
        help="Run up to N rows with the same settings in one model call (1-64): more edits "
        "per minute on a GPU; each row as it comes out alone, up to float rounding.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
    app.command("eval")(evaluate)
    app.command("report")(report)


@cli_errors
def batch(
    manifest: Path = typer.Argument(..., help="CSV or JSONL manifest (image, target_prompt, ...)."),
    outdir: Path = typer.Option(..., "--output", "-o", help="Output folder (created; resumable)."),
    model: opt.Model = None,
    preset: opt.Preset = "lusd",
    seed: opt.Seed = 0,
    steps: opt.Steps = None,
    settings: opt.Settings = None,
    candidates: opt.Candidates = 1,
    review_threshold: ReviewThreshold = None,
    group: Group = 1,
    backend: str = typer.Option("local", "--backend", help="local (one process) or ray."),
    workers: int = typer.Option(1, "--workers", "-w", help="Ray actors (one model each)."),
    address: str = typer.Option(None, "--address", help="Ray cluster, e.g. ray://head:10001."),
    strict: bool = typer.Option(False, "--strict", help="Abort if any manifest row is bad."),
    allow_dirs: opt.AllowDirs = None,
    rerun_changed: bool = typer.Option(
        False, "--rerun-changed", help="Redo done rows whose config, prompts or seed changed."
    ),
    no_crop: opt.NoCrop = False,
    max_attempts: int = typer.Option(3, "--max-attempts", help="Tries per row before giving up."),
    device: opt.Device = opt.AUTO,
    dtype: opt.Dtype = opt.AUTO,
    threads: int = typer.Option(None, "--threads", help="Torch CPU threads per worker."),
    oracle: opt.Oracle = None,
    allow_pickle: opt.AllowPickle = False,
    model_config: opt.ModelConfig = None,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    require_commercial: opt.RequireCommercial = False,
    c2pa_cert: opt.C2PACert = None,
    c2pa_key: opt.C2PAKey = None,
    hour_price: opt.HourPrice = None,
) -> None:
    """Edit every row of MANIFEST into OUTDIR; run again to resume where it stopped.

    A row's own seed, preset, candidates, num_steps or other EditConfig column wins over
    --seed, --preset, --candidates, --steps and --set. A manifest header line
    '# lusd: require_commercial=true' does what --require-commercial does;
    '# lusd: candidates=4' sets the manifest's candidates (over --candidates).
    """
    from lusd.batch.runner import BatchOptions, run_batch
    from lusd.commands.common import quiet_libraries, user_error

    overrides: dict[str, object] = dict(parse_overrides(settings))
    if steps is not None:
        overrides["num_steps"] = steps
    opts = BatchOptions(
        manifest=manifest,
        outdir=outdir,
        model=model,
        preset=preset,
        seed=seed,
        overrides=overrides,
        strict=strict,
        rerun_changed=rerun_changed,
        max_attempts=max_attempts,
        backend=backend,
        workers=workers,
        address=address,
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
        threads=threads,
        model_config=model_config,
        oracle=oracle,
        require_commercial=require_commercial,
        c2pa_cert=None if c2pa_cert is None else str(c2pa_cert),
        c2pa_key=None if c2pa_key is None else str(c2pa_key),
        hour_price=hour_price,
        allow_dirs=tuple(allow_dirs or ()),
        crop=not no_crop,
        candidates=candidates,
        review_threshold=review_threshold,
        group=group,
    )
    quiet_libraries()
    summary = _with_progress(opts, run_batch) if progress else run_batch(opts)
    if summary.review:
        console.print(summary.review)
    for note in summary.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    if backend == "local" and workers > 1:  # after the run: a bad option is the one line
        err_console.print(
            "[yellow]note:[/] --workers applies to --backend ray; the local backend ran one "
            "edit at a time"
        )
    for bad in summary.bad_rows:
        err_console.print(f"[yellow]skipped[/] {manifest.name} {bad}")
    for failure in summary.failures:
        err_console.print(
            f"[red]failed[/] {manifest.name} line {failure.line} ({failure.row_id}): "
            f"{user_error(failure.error)}"
        )
    if summary.changed:
        err_console.print(
            f"[yellow]note:[/] {len(summary.changed)} done row(s) changed since they ran "
            "(config, prompts or seed); kept the old outputs: pass --rerun-changed to redo them"
        )
    if summary.gave_up:
        err_console.print(
            f"[yellow]note:[/] {len(summary.gave_up)} row(s) failed {max_attempts} times and were "
            "not retried (raise --max-attempts to try again)"
        )
    rate = f", {summary.edits_per_minute:.1f} edits/min" if summary.done else ""
    console.print(
        f"{summary.done} done, {summary.failed} failed, {summary.skipped_done} already done, "
        f"{len(summary.bad_rows)} bad row(s) in {summary.seconds:.1f} s{rate} -> {outdir}"
    )
    if summary.failed or summary.bad_rows or summary.gave_up:
        err_console.print(f"see the failures with: lusd report {outdir}")
        raise typer.Exit(1)


def _with_progress(opts, run_batch):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err_console, transient=False)
    task = bar.add_task("batch", total=None, failed="")
    failed = 0

    def update(done: int, total: int, job_id: str, ok: bool) -> None:
        nonlocal failed
        if done == 0:
            bar.start()  # only once the manifest is valid and there is work
        failed += not ok
        text = f"[red]{failed} failed[/]" if failed else ""
        bar.update(task, completed=done, total=total, failed=text)

    try:
        return run_batch(opts, progress=update)
    finally:
        bar.stop()


@cli_errors
def evaluate(
    target: Path = typer.Argument(..., help="Batch OUTDIR, or a manifest with an 'edited' column."),
    clip: str = typer.Option(None, "--clip", help="CLIPModel folder or id (paper: ViT-B/32)."),
    device: opt.Device = opt.AUTO,
    output: Path = typer.Option(None, "--output", "-o", help="Per-edit CSV (manifest input only)."),
    oracle: opt.Oracle = None,
    allow_dirs: opt.AllowDirs = None,
) -> None:
    """Compute L1, L2 (whole and outside the mask), CLIP-I/T/R, CLIP-AUC and oracle success.

    --device is where CLIP runs (auto: CUDA if present, else the CPU).
    """
    from lusd.eval.evaluate import evaluate_manifest, evaluate_outdir

    device = None if device == opt.AUTO else device  # the CLIP scorer's own choice
    if target.is_dir():
        result = evaluate_outdir(target, clip, device, oracle)
        where = target / "metrics.json"
    else:
        where = output or target.with_suffix(".metrics.csv")
        result = evaluate_manifest(
            target, where, clip, device, bool(oracle), tuple(allow_dirs or ())
        )
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    for key, value in result.summary.items():
        if value is not None:
            console.print(
                f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}"
            )
    console.print(f"wrote {where}")


@cli_errors
def report(
    outdir: Path = typer.Argument(..., help="A batch output folder."),
    output: Path = typer.Option(None, "--output", "-o", help="HTML file (OUTDIR/report.html)."),
    link: bool = typer.Option(
        False, "--link", help="Link the images relatively instead of embedding thumbnails."
    ),
    thumb: int = typer.Option(160, "--thumb", help="Thumbnail size in pixels (embedded images)."),
    hour_price: opt.HourPrice = None,
) -> None:
    """Render one self-contained HTML page: KPIs, before/after/mask grid, histograms, failures.

    Without --hour-price the cost per image uses the price the batch ran with.
    """
    from lusd.batch.report import write_report

    path = write_report(outdir, output, embed=not link, thumb=thumb, hour_price=hour_price)
    console.print(f"wrote {path}")
