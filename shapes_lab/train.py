"""Train the shapes-world model from scratch (``lusd lab train-shapes``).

Stage ``vae`` trains the AutoencoderKL, stage ``unet`` the UNet jointly with the text
encoder on the frozen VAE's latents, stage ``export`` writes the diffusers folder. Each
stage is time-budgeted, seeded (the data of step k is a pure function of seed and k),
checkpointed every few minutes into the work folder and resumed from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made training steps up to 7x slower (measured). Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from lusd.errors import ConfigError  # noqa: E402
from lusd.shapes.world import WORD_KINDS  # noqa: E402
from shapes_lab.models import Arch  # noqa: E402
from shapes_lab.training_run import Run, StageSpec  # noqa: E402

log = logging.getLogger(__name__)

STAGES = ("vae", "unet", "export")


def step_range(text: str) -> tuple[int, int]:
    """``"START:END"`` (END may be empty: no end) -> (start, end), 0 <= start <= end."""
    start, sep, end = text.partition(":")
    try:
        lo, hi = int(start or 0), int(end) if end else sys.maxsize
    except ValueError:
        lo = hi = -1
    if not sep or not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected START:END step numbers, got {text!r}")
    return lo, hi


def word_kinds(text: str) -> tuple[str, ...]:
    """``"position,color"`` -> ("position", "color"), each a kind of ``WORD_KINDS``."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in WORD_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"expected word kinds among {','.join(WORD_KINDS)}, got {text!r}"
        )
    return kinds


def late_word_kinds(text: str) -> tuple[str, ...]:
    """Like :func:`word_kinds`; ``"none"`` -> () (no word grounded after the window)."""
    return () if text.strip() == "none" else word_kinds(text)


def _model_source(text: str) -> Path:
    if text == "shipped":
        from lusd.shapes import SHAPES_MODEL_DIR

        return SHAPES_MODEL_DIR
    return Path(text)


class _OneLineErrors(argparse.ArgumentParser):
    """Argument errors as one line, without the 20-line usage (``--help`` still has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _OneLineErrors(prog="shapes_lab.train", description=__doc__)
    p.add_argument("--work", type=Path, default=Path("shapes-train"), help="checkpoint folder")
    p.add_argument("--out", type=Path, default=None, help="model folder to write at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stages", default=None, help="default: vae,unet,export (unet,export with --vae-from)"
    )
    p.add_argument("--vae-minutes", type=float, default=24.0)
    p.add_argument("--vae-steps", type=int, default=100_000)
    p.add_argument("--vae-batch", type=int, default=32)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-crop", type=int, default=32, help="train the VAE on crops (0 = off)")
    p.add_argument("--vae-object-weight", type=float, default=4.0, help="loss weight on objects")
    p.add_argument("--unet-minutes", type=float, default=62.0)
    p.add_argument("--unet-steps", type=int, default=1_000_000)
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument(
        "--position-steps",
        type=step_range,
        default=(0, 0),
        metavar="START:END",
        help="curriculum: UNet steps [START, END) see one red circle in a random cell, "
        "position named, plain noise; Adam moments reset at START and END "
        "(END may be left out: to the end)",
    )
    p.add_argument("--offset-noise", type=float, default=0.15, help="low-frequency noise")
    p.add_argument(
        "--ground-token",
        type=float,
        default=0.1,
        help="weight of the cross-attention grounding token loss (shapes_lab.grounding)",
    )
    p.add_argument(
        "--ground-pixel",
        type=float,
        default=0.0,
        help="weight of the cross-attention grounding pixel loss (shapes_lab.grounding)",
    )
    p.add_argument(
        "--ground-words",
        type=word_kinds,
        default="position,shape",
        metavar="KINDS",
        help="the object words the grounding supervises, of "
        f"{','.join(WORD_KINDS)} (the others are left free)",
    )
    p.add_argument(
        "--ground-late-words",
        type=late_word_kinds,
        default=None,
        metavar="KINDS",
        help="the object words still grounded after --ground-until ('none': the epsilon "
        "loss alone after it; default: position, or none when --ground-until is 0)",
    )
    p.add_argument(
        "--ground-from",
        type=int,
        default=0,
        metavar="STEP",
        help="UNet step from which the grounding losses apply (before it: the epsilon loss alone)",
    )
    p.add_argument(
        "--ground-until",
        type=int,
        default=3500,
        metavar="STEP",
        help="UNet step at which the grounding losses stop (0 = never; after it: the epsilon "
        "loss alone)",
    )
    p.add_argument(
        "--ground-min-t",
        type=int,
        default=0,
        metavar="T",
        help="the grounding losses judge only the samples noised to timestep T or later "
        "(0-999; the layout is decided at high noise, the shapes' detail at low noise)",
    )
    p.add_argument(
        "--ground-min-side",
        type=int,
        default=8,
        metavar="N",
        help="the grounding losses judge only the cross-attention layers at least N "
        "locations wide (8: the 8x8 layers, not the 4x4 ones)",
    )
    p.add_argument(
        "--ground-self",
        type=float,
        default=0.0,
        metavar="W",
        help="weight of the self-attention grounding loss at the 16x16 self-attention "
        "layers, for the whole run (shapes_lab.grounding; 0 = off)",
    )
    p.add_argument(
        "--vae-from",
        type=_model_source,
        default=None,
        metavar="FOLDER",
        help="take the VAE stage from a trained model folder (or its vae/ folder; "
        "'shipped': the shipped model's) instead of training one; its sizes replace --arch's",
    )
    p.add_argument(
        "--unet-from",
        type=_model_source,
        default=None,
        metavar="FOLDER",
        help="start the UNet stage from a trained model folder's UNet and text encoder "
        "('shipped': the shipped model's); --arch may add attention blocks to its UNet, "
        "which start as the identity (shapes_lab.warm_start)",
    )
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="also keep every UNet checkpoint as unet/kept/ckpt_STEP.pt (128 MB each at the "
        "shipped sizes), for bench/checkpoint_selection.py",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument(
        "--arch",
        type=str,
        default="{}",
        help="JSON overrides of models.Arch (default: the shipped model's sizes)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.stages is None:
        args.stages = ",".join(STAGES if args.vae_from is None else STAGES[1:])
    stages = {s.strip() for s in args.stages.split(",")} - {""}
    if unknown := ", ".join(sorted(stages - set(STAGES))):
        p.error(f"unknown --stages {unknown}: any of {','.join(STAGES)}")
    if args.vae_from is not None and "vae" in stages:
        p.error("--vae-from takes the place of the vae stage: leave vae out of --stages")
    if args.ground_until and args.ground_until <= args.ground_from:
        p.error(
            f"--ground-until ({args.ground_until}) must be a later step than --ground-from "
            f"({args.ground_from}); --ground-until 0 grounds to the end"
        )
    if args.ground_late_words is None:
        args.ground_late_words = ("position",) if args.ground_until else ()
    elif args.ground_late_words and not args.ground_until:
        p.error("--ground-late-words needs a --ground-until step after which they apply")
    if not 0 <= args.ground_min_t < 1000:
        p.error("--ground-min-t must be a timestep from 0 to 999")
    if args.ground_min_side < 1:
        p.error("--ground-min-side must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    arch_file = args.work / "arch.json"
    fixed = arch_file.exists()  # a resumed run keeps its sizes
    arch = Arch.from_dict(json.loads(arch_file.read_text() if fixed else args.arch))
    from shapes_lab.unet_stage import train_unet
    from shapes_lab.vae_stage import take_vae, train_vae

    vae_spec = StageSpec("vae", args.vae_minutes, args.vae_steps, args.vae_batch, args.vae_lr)
    if args.vae_from is not None:
        taken = take_vae(Run(args.work, vae_spec, args.ckpt_minutes), arch, args.vae_from)
        if fixed and taken != arch:
            raise ConfigError(
                f"{args.work} was started with another VAE's sizes: use a new --work folder"
            )
        arch = taken
    if not fixed:
        arch_file.write_text(json.dumps(arch.to_dict(), indent=1))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if "vae" in stages:
        train_vae(Run(args.work, vae_spec, args.ckpt_minutes), arch, args)
    if "unet" in stages:
        spec = StageSpec("unet", args.unet_minutes, args.unet_steps, args.unet_batch, args.unet_lr)
        run = Run(args.work, spec, args.ckpt_minutes, keep=args.keep_checkpoints)
        train_unet(run, arch, args)
    if "export" in stages:
        from shapes_lab.export import export_model

        out = args.out or args.work / "model"
        export_model(args.work, arch, out)
        log.info("model written to %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
