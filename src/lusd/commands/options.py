"""The options several commands share, each defined once: name, type and help text.

A command declares one as ``model: Model = None``; the defaults it may take are the
constants below, so that ``lusd edit``, ``lusd batch``, ``lusd serve``, ``lusd info`` and the
lab commands spell, parse and explain an option the same way.
``tests/cli/test_cli_options.py`` checks that every option with the same name has the same type,
default and help in every command, except the differences listed there:

* ``--max-pixels``: ``lusd serve`` keeps a lower default (:data:`SERVE_MAX_PIXELS`), as
  pictures come from other people's browsers;
* ``lusd generate``'s ``--model`` and ``--steps`` are its own (:data:`GenerateModel`,
  :data:`GenerateSteps`): it reads only diffusers SD 1.x folders and samples 50 DDIM steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lusd.images import DEFAULT_MAX_PIXELS

#: Help of the model, as ``--model`` and as ``lusd info``'s argument.
MODEL_HELP = "SD/SDXL folder, hub id or .safetensors file (default: the shipped shapes model)."

#: Default of ``--device``: CUDA if present, then MPS, then the CPU.
AUTO = "auto"
#: Default of ``--max-pixels`` in ``lusd serve`` (every other command: DEFAULT_MAX_PIXELS).
SERVE_MAX_PIXELS = 16_000_000
__all__ = ["AUTO", "DEFAULT_MAX_PIXELS", "MODEL_HELP", "SERVE_MAX_PIXELS"]

Model = Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelArgument = Annotated[str | None, typer.Argument(help=MODEL_HELP)]
ModelConfig = Annotated[
    str | None,
    typer.Option(
        "--model-config",
        help="Diffusers config folder (or hub id) of the model's family, for a single-file "
        "checkpoint.",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device", help="auto (CUDA if present, then MPS, then CPU), cpu, cuda, cuda:N or mps."
    ),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype", help="auto (float16 on a GPU, float32 on the CPU), float32, float16 or bfloat16."
    ),
]
AllowPickle = Annotated[
    bool,
    typer.Option(
        "--allow-pickle", help="Allow pickled weights (.ckpt, .bin): only from people you trust."
    ),
]
RequireCommercial = Annotated[
    bool,
    typer.Option(
        "--require-commercial", help="Refuse a model whose licence forbids commercial use."
    ),
]
C2PACert = Annotated[
    Path | None,
    typer.Option("--c2pa-cert", help="PEM certificate chain: sign C2PA Content Credentials."),
]
C2PAKey = Annotated[Path | None, typer.Option("--c2pa-key", help="PEM private key of --c2pa-cert.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed, the same result.")]
Steps = Annotated[
    int | None, typer.Option("--steps", min=1, help="Iterations per edit (default: the model's).")
]
Settings = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="EditConfig override, e.g. lambda_reg=0.1 (repeatable)."
    ),
]
MaxPixels = Annotated[
    int, typer.Option("--max-pixels", help="Pixel limit of an input picture (width x height).")
]
Preset = Annotated[
    str,
    typer.Option(
        "--preset",
        "-p",
        help="lusd, the baselines dds, sds, cds, pds, or an ablation (lusd-no-mask, "
        "lusd-no-filter, lusd-no-norm).",
    ),
]
Candidates = Annotated[
    int,
    typer.Option(
        "--candidates",
        help="Run K seeds (SEED .. SEED+K-1) together and keep the one the judge scores best "
        "(1-16).",
    ),
]
NoCrop = Annotated[
    bool,
    typer.Option(
        "--no-crop", help="With a region, edit the whole picture, not a crop around the region."
    ),
]
AllowDirs = Annotated[
    list[Path] | None,
    typer.Option("--allow-dir", help="Folder rows may name images in, besides the manifest's own."),
]
Oracle = Annotated[
    bool | None,
    typer.Option(
        "--oracle/--no-oracle",
        help="Judge with the shapes oracle (default: on for the shapes model's batches).",
    ),
]
HourPrice = Annotated[
    float | None,
    typer.Option(
        "--hour-price",
        "--gpu-hour-price",
        help="Price of an hour of this machine (or GPU), for the cost per edit.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print everything as one JSON object.")]

GenerateModel = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Diffusers SD folder (default: the shipped shapes model)."),
]
GenerateSteps = Annotated[int, typer.Option("--steps", min=1, help="DDIM sampling steps.")]
