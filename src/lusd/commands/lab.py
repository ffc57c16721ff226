"""`lusd lab`: the development commands, which need a checkout of the repository.

`lusd lab train-shapes` trains the shapes-world model, `lusd lab bench-shapes` runs the
oracle-judged edit benchmark. Both run the checkout's ``shapes_lab/`` (next to ``src/``,
not in the package): only these commands put the checkout on ``sys.path``. The old
spellings `lusd train-shapes` and `lusd bench shapes` still work (hidden, with a note).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from lusd.commands import options as opt
from lusd.commands.common import (
    cli_errors,
    console,
    err_console,
    parse_overrides,
    quiet_libraries,
)
from lusd.errors import ConfigError

#: The repository checkout an editable install (``pip install -e .``) runs from.
CHECKOUT = Path(__file__).resolve().parents[3]

lab_app = typer.Typer(
    name="lab",
    help="Development commands: train the shapes model, run its benchmark. They need a "
    "checkout of the repository (they run its shapes_lab/ folder, which the package does not "
    "ship): clone it and `pip install -e .` there.",
    no_args_is_help=True,
)
#: The old `lusd bench shapes`, hidden.
_old_bench_app = typer.Typer(name="bench", no_args_is_help=True)


def lab_module(name: str, command: str) -> ModuleType:
    """``shapes_lab.<name>`` from the repository checkout this lusd is installed from.

    ``shapes_lab/`` (training, tuning, research benchmarks) sits next to ``src/`` in the
    repository and is not in the package; an editable install finds it there. Anywhere
    else: a ConfigError (one line) saying so.
    """
    if (CHECKOUT / "shapes_lab" / "__init__.py").is_file() and str(CHECKOUT) not in sys.path:
        sys.path.append(str(CHECKOUT))
    try:
        return importlib.import_module(f"shapes_lab.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("shapes_lab", f"shapes_lab.{name}"):
            raise
    raise ConfigError(
        f"`lusd lab {command}` needs a checkout of the lusd repository: it runs the "
        "repository's shapes_lab/ folder, which the installed package does not ship "
        "(clone the repository and `pip install -e .` there)"
    )


def _moved(function: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """``function`` under its old name: a note on stderr, then the same command."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err_console.print(f"[yellow]note:[/] `lusd {old}` is now `lusd {new}`")
        return function(*args, **kwargs)

    return wrapper


def register(app: typer.Typer) -> None:
    lab_app.command("train-shapes")(train_shapes)
    lab_app.command("bench-shapes")(bench_shapes)
    app.add_typer(
        lab_app,
        name="lab",
        short_help="Train the shapes model, run its benchmark (needs a repository checkout).",
        rich_help_panel="Development",
    )
    # the spellings before `lusd lab`, for scripts that still use them
    app.command("train-shapes", hidden=True)(
        _moved(train_shapes, "train-shapes", "lab train-shapes")
    )
    _old_bench_app.command("shapes")(_moved(bench_shapes, "bench shapes", "lab bench-shapes"))
    app.add_typer(_old_bench_app, name="bench", hidden=True)


@cli_errors
def train_shapes(
    work: Path = typer.Option(
        Path("shapes-train"), "--work", help="Checkpoint folder (resumable)."
    ),
    out: Path = typer.Option(Path("shapes-model"), "--out", "-o", help="Model folder to write."),
    seed: opt.Seed = None,
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

    Options left out (--seed too) take the recipe's values (``shapes_lab.train``,
    docs/shapes-model.md).
    """
    main = lab_module("train", "train-shapes").main
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
def bench_shapes(
    cases: int = typer.Option(150, "--cases", min=1, help="Number of seeded edit cases."),
    presets: str = typer.Option(
        "lusd,dds,sds,cds,pds,lusd-no-mask,lusd-no-filter,lusd-no-norm",
        "--presets",
        help="Comma list.",
    ),
    out_dir: Path = typer.Option(Path("bench/results"), "--out", help="Results folder."),
    name: str = typer.Option("shapes_edits", "--name", help="Result file stem."),
    model: opt.Model = None,
    docs: Path = typer.Option(None, "--docs", help="Also write the table into this markdown file."),
    summarize_only: bool = typer.Option(
        False, "--summarize-only", help="Only summarise what the journal holds; run nothing."
    ),
    settings: opt.Settings = None,
) -> None:
    """Oracle-judged edit benchmark on the shapes world (resumes from its .jsonl journal).

    --set applies to every preset; give the run its own --name then.
    """
    edit_bench = lab_module("edit_bench", "bench-shapes")
    results_doc = lab_module("results_doc", "bench-shapes")
    quiet_libraries()
    from rich.progress import Progress

    from lusd.loading import load_pipeline

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
