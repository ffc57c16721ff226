"""Shapes-world commands: `lusd train-shapes`, `lusd generate`, `lusd demo`, `lusd bench shapes`.

`train-shapes` and `bench shapes` run the checkout's ``shapes_lab`` (not installed).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import typer

from lusd.commands.common import cli_errors, console, parse_overrides, quiet_libraries
from lusd.errors import ConfigError

bench_app = typer.Typer(
    name="bench", help="Benchmarks with measured, oracle-judged results.", no_args_is_help=True
)


def _lab_module(name: str, command: str) -> ModuleType:
    """``shapes_lab.<name>`` from the repository checkout this lusd is installed from.

    ``shapes_lab/`` (training, tuning, research benchmarks) sits next to ``src/`` in the
    repository and is not in the package; an editable install (``pip install -e .``)
    finds it there.
    """
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "shapes_lab" / "__init__.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        return importlib.import_module(f"shapes_lab.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != "shapes_lab":
            raise
    raise ConfigError(
        f"run from a repository checkout: `lusd {command}` needs its shapes_lab/ folder, "
        "which the installed package does not ship (clone the repository, "
        "`pip install -e .` there)"
    )


def register(app: typer.Typer) -> None:
    app.command("train-shapes")(train_shapes)
    app.command("generate")(generate)
    app.command("demo")(demo)
    bench_app.command("shapes")(bench_shapes)
    app.add_typer(bench_app, name="bench")


@cli_errors
def train_shapes(
    work: Path = typer.Option(
        Path("shapes-train"), "--work", help="Checkpoint folder (resumable)."
    ),
    out: Path = typer.Option(Path("shapes-model"), "--out", "-o", help="Model folder to write."),
    seed: int = typer.Option(None, "--seed", help="Default 0."),
    stages: str = typer.Option(
        None,
        "--stages",
        help="Any of vae,unet,export (default: all; unet,export with --vae-from).",
    ),
    vae_minutes: float = typer.Option(None, "--vae-minutes", help="Default: the recipe's."),
    unet_minutes: float = typer.Option(None, "--unet-minutes", help="Default: the recipe's."),
    unet_lr: float = typer.Option(
        None, "--unet-lr", min=0.0, help="UNet stage's peak learning rate. Default: 1e-3."
    ),
    position_steps: str = typer.Option(
        None,
        "--position-steps",
        metavar="START:END",
        help="UNet steps of the position curriculum (one red circle). Default: the recipe's.",
    ),
    offset_noise: float = typer.Option(
        None, "--offset-noise", min=0.0, help="Low-frequency training noise. Default: the recipe's."
    ),
    ground_token: float = typer.Option(
        None, "--ground-token", min=0.0, help="Grounding token-loss weight. Default: the recipe's."
    ),
    ground_pixel: float = typer.Option(
        None, "--ground-pixel", min=0.0, help="Grounding pixel-loss weight. Default: the recipe's."
    ),
    ground_words: str = typer.Option(
        None,
        "--ground-words",
        metavar="KINDS",
        help="Object words the grounding supervises (of size,color,shape,position). "
        "Default: position,shape.",
    ),
    ground_from: int = typer.Option(
        None, "--ground-from", min=0, help="UNet step the grounding starts at. Default: 0."
    ),
    ground_until: int = typer.Option(
        None,
        "--ground-until",
        min=0,
        help="UNet step the grounding stops at (0: never). Default: 3500.",
    ),
    ground_late_words: str = typer.Option(
        None,
        "--ground-late-words",
        metavar="KINDS",
        help="Object words still grounded after --ground-until (none: no word). "
        "Default: position (none when --ground-until is 0).",
    ),
    ground_min_t: int = typer.Option(
        None,
        "--ground-min-t",
        min=0,
        max=999,
        help="Lowest noise timestep the grounding judges. Default: 0 (all).",
    ),
    ground_min_side: int = typer.Option(
        None,
        "--ground-min-side",
        min=1,
        help="Narrowest cross-attention layer the grounding judges. Default: 8 (not 4x4).",
    ),
    ground_self: float = typer.Option(
        None,
        "--ground-self",
        min=0.0,
        help="Self-attention grounding weight at the 16x16 layers (0: off). Default: 0.",
    ),
    arch: str = typer.Option(None, "--arch", help="JSON overrides of the architecture."),
    vae_from: str = typer.Option(
        None,
        "--vae-from",
        metavar="FOLDER",
        help="Train on a trained VAE instead of a new one: a model folder, its vae/ folder, "
        "or 'shipped' (the shipped model's).",
    ),
    unet_from: str = typer.Option(
        None,
        "--unet-from",
        metavar="FOLDER",
        help="Start the UNet stage from a trained model folder (or 'shipped'); --arch may "
        "add attention blocks, which start as the identity.",
    ),
    keep_checkpoints: bool = typer.Option(
        False,
        "--keep-checkpoints",
        help="Also keep every UNet checkpoint (unet/kept/), for bench/checkpoint_selection.py.",
    ),
) -> None:
    """Train the shapes-world model (about 90 minutes on 2 CPU cores; the shipped one adds a
    32-minute second run with --unet-from, docs/shapes-model.md).

    Options left out take the recipe's values (``shapes_lab.train``, docs/shapes-model.md).
    """
    main = _lab_module("train", "train-shapes").main
    argv = ["--work", str(work), "--out", str(out)]
    given = {
        "--seed": seed,
        "--stages": stages,
        "--vae-minutes": vae_minutes,
        "--unet-minutes": unet_minutes,
        "--unet-lr": unet_lr,
        "--position-steps": position_steps,
        "--offset-noise": offset_noise,
        "--ground-token": ground_token,
        "--ground-pixel": ground_pixel,
        "--ground-words": ground_words,
        "--ground-from": ground_from,
        "--ground-until": ground_until,
        "--ground-late-words": ground_late_words,
        "--ground-min-t": ground_min_t,
        "--ground-min-side": ground_min_side,
        "--ground-self": ground_self,
        "--arch": arch,
        "--vae-from": vae_from,
        "--unet-from": unet_from,
    }
    for flag, value in given.items():
        if value is not None:
            argv += [flag, str(value)]
    if keep_checkpoints:
        argv.append("--keep-checkpoints")
    raise typer.Exit(main(argv))


@cli_errors
def generate(
    prompt: str = typer.Argument(..., help='e.g. "a red circle on the left on a black background"'),
    output: Path = typer.Option(Path("generated.png"), "--output", "-o", help="Output PNG."),
    model: str = typer.Option(None, "--model", "-m", help="SD folder (default: the shapes model)."),
    steps: int = typer.Option(50, "--steps", min=1, help="DDIM steps."),
    guidance: float = typer.Option(
        7.5, "--guidance", min=0.0, help="Classifier-free guidance scale."
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Plain text-to-image (DDIM, classifier-free guidance): the shapes model or an SD folder."""
    from lusd.errors import PromptError
    from lusd.images import output_format

    output_format(output)
    if not prompt.strip():
        raise PromptError("the prompt is empty: say what the picture should show")
    quiet_libraries()
    from lusd.disclosure import GENERATED_SOURCE_TYPE, tool_xmp
    from lusd.images import save_image
    from lusd.pipeline import check_prompt_length
    from lusd.shapes.generate import generate as run_generate
    from lusd.shapes.generate import load_t2i

    pipe = load_t2i(model)
    check_prompt_length(pipe.tokenizer, prompt)
    image = run_generate(pipe, prompt, seed, steps, guidance)[0]
    meta = {"prompt": prompt, "seed": str(seed), "steps": str(steps), "guidance": str(guidance)}
    xmp = tool_xmp([prompt], GENERATED_SOURCE_TYPE)
    save_image(image, output, metadata=meta, xmp=xmp)
    console.print(f"wrote {output} (AI-generated, disclosed in XMP)")
    try:
        from lusd.shapes.oracle import describe

        console.print(f"oracle sees: {describe(image)}")
    except Exception:  # noqa: BLE001 - other models' images need not be shapes-world scenes
        pass


@cli_errors
def demo(
    output: Path = typer.Option(Path("lusd-demo.png"), "--output", "-o", help="Sheet PNG."),
    seed: int = typer.Option(0, "--seed"),
    steps: int = typer.Option(None, "--steps", min=1, help="Iterations (default: the model's)."),
) -> None:
    """Render a scene, run three LUSD edits with the shipped model, write input|output|mask."""
    started = time.perf_counter()
    quiet_libraries()
    from lusd.loading import load_pipeline
    from lusd.shapes.demo import run_demo, write_sheet

    with console.status("loading the shapes model..."):
        pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    with console.status("editing..."):
        results = run_demo(pipe, seed, steps)
    write_sheet(results, output)
    for r in results:
        verdict = "[green]success[/]" if r.success else "[red]not as asked[/]"
        console.print(
            f"[bold]{r.case.kind}[/]: {r.case.source_prompt!r} -> {r.case.target_prompt!r}"
        )
        console.print(f"  oracle before: {r.before}")
        console.print(
            f"  oracle after:  {r.after}  ({verdict}, focus {r.focus}, {r.seconds:.1f} s)"
        )
    console.print(
        f"wrote {output} (input | output | mask) in {time.perf_counter() - started:.1f} s"
    )


@cli_errors
def bench_shapes(
    cases: int = typer.Option(150, "--cases", min=1, help="Number of seeded edit cases."),
    presets: str = typer.Option(
        "lusd,dds,sds,lusd-no-mask,lusd-no-filter,lusd-no-norm", "--presets", help="Comma list."
    ),
    out_dir: Path = typer.Option(Path("bench/results"), "--out", help="Results folder."),
    name: str = typer.Option("shapes_edits", "--name", help="Result file stem."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder (default: shapes model)."),
    docs: Path = typer.Option(None, "--docs", help="Also write the table into this markdown file."),
    summarize_only: bool = typer.Option(
        False, "--summarize-only", help="Only summarise what the journal holds; run nothing."
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="EditConfig override KEY=VALUE for every preset (use with --name)."
    ),
) -> None:
    """Oracle-judged edit benchmark on the shapes world (resumes from its .jsonl journal)."""
    quiet_libraries()
    from rich.progress import Progress

    from lusd.loading import load_pipeline

    edit_bench = _lab_module("edit_bench", "bench shapes")
    results_doc = _lab_module("results_doc", "bench shapes")
    names = [p.strip() for p in presets.split(",") if p.strip()]
    pipe = load_pipeline(model, "cpu")
    pipe.set_progress_bar_config(disable=True)
    with Progress(console=console) as progress:
        task = progress.add_task("editing", total=cases * len(names))
        payload = edit_bench.benchmark(
            pipe,
            cases,
            names,
            out_dir,
            name=name,
            on_record=lambda r: progress.advance(task),
            run_missing=not summarize_only,
            overrides=parse_overrides(settings),
        )
    console.print(edit_bench.markdown_table(payload["summary"]))
    if docs is not None:
        chart = Path(os.path.relpath(out_dir / f"{name}.png", docs.parent))
        results_doc.write_results_doc(docs, payload, chart)
        console.print(f"table written to {docs}")
