"""Would picking a training run's checkpoint with the oracle beat taking its last one?

The noise-prediction loss is blind to the objects' form, which decides the oracle's
verdicts (bench/shapes-experiments.md, "The same recipe with another seed"). This exports each
checkpoint a run kept (`lusd lab train-shapes --keep-checkpoints`: `unet/kept/*.pt`) and
judges its EMA weights on two prompt sets of 200: the evaluation's (seed 2024, what a
selection would look at) and the held-out prompts (seed 99, what checks the selection).

    python bench/checkpoint_selection.py --work W [--min-step N] --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from lusd.shapes.generate import load_t2i
from shapes_lab.export import export_model
from shapes_lab.model_quality import generation_eval
from shapes_lab.models import Arch

PROMPT_SETS = {"selection": 2024, "held_out": 99}


def judge_checkpoint(work: Path, arch: Arch, ckpt: Path) -> dict:
    """Both prompt sets' summaries for the EMA weights of ``ckpt`` (on ``work``'s VAE)."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        os.symlink(work.resolve() / "vae", staged / "vae")
        (staged / "unet").mkdir()
        os.symlink(ckpt.resolve(), staged / "unet" / "ckpt.pt")
        factor = "scaling_factor.txt"
        os.symlink((work / "unet" / factor).resolve(), staged / "unet" / factor)
        pipe = load_t2i(export_model(staged, arch, staged / "model"))
        row = {}
        for name, seed in PROMPT_SETS.items():
            summary, _, _ = generation_eval(pipe, 200, seed=seed)
            row[name] = {k: summary[k] for k in ("single_object", "two_object", "all_correct")}
        return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, required=True, help="the run's work folder")
    p.add_argument(
        "--snapshots", type=Path, default=None, help="folder of checkpoints (default: W/unet/kept)"
    )
    p.add_argument("--min-step", type=int, default=0, help="skip earlier checkpoints")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    arch = Arch.from_dict(json.loads((args.work / "arch.json").read_text()))
    rows = []
    for ckpt in sorted((args.snapshots or args.work / "unet" / "kept").glob("*.pt")):
        step = torch.load(ckpt, map_location="cpu", weights_only=False)["step"]
        if step < args.min_step or any(r["step"] == step for r in rows):
            continue
        started = time.perf_counter()
        rows.append({"step": step, "file": ckpt.name, **judge_checkpoint(args.work, arch, ckpt)})
        rows[-1]["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(rows[-1]), flush=True)
    if not rows:
        raise SystemExit(f"no checkpoints from step {args.min_step} on (--keep-checkpoints)")
    rows.sort(key=lambda r: r["step"])
    picked = max(rows, key=lambda r: r["selection"]["all_correct"])  # the first best, if tied
    result = {
        "work": str(args.work),
        "rule": "highest share of the selection prompts right (seed 2024)",
        "picked_step": picked["step"],
        "last_step": rows[-1]["step"],
        "checkpoints": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
