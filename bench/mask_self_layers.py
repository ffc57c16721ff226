"""Does a mask that stays on the object help LUSD? The paper's self layers against a subset.

The paper refines the cross map with the self-attention averaged over *every* layer of the
self level. bench/mask_layers.py found one 16x16 self layer of the shapes31 models that
moves the map off the object; this runs LUSD on the tuning cases (seed 7, never the
reported ones) with the paper's layers and with only the named ones, and writes
bench/results/mask_self_layers_<name>.json (success, background change, mask
localisation per edit kind). A research variant, not an option of the tool.

    python bench/mask_self_layers.py --model FOLDER --name shapes31g \
        --keep down_blocks.0,up_blocks.2.attentions.1 [--cases 90]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from lusd.loading import load_pipeline
from lusd.shapes.edits import make_cases
from shapes_lab.edit_bench import TUNING_SEED, run, summarize


def use_self_layers(pipe, keep: list[str]) -> None:
    """Read the mask from the self layers whose names start with one of ``keep`` only."""
    layers = pipe.mask_layers
    kept = [n for n in layers.self_ if any(n.startswith(k) for k in keep)]
    if not kept:
        raise SystemExit(f"no self layer starts with {keep}: {layers.self_}")
    subset = dataclasses.replace(layers, self_=kept)
    pipe.mask_layers_for = lambda config: subset  # these layers for every edit


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--name", default="shipped")
    p.add_argument("--keep", required=True, help="comma list of self-layer name prefixes")
    p.add_argument("--cases", type=int, default=90)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    cases = make_cases(args.cases, TUNING_SEED)
    results = {}
    for variant in ("paper", "subset"):
        pipe = load_pipeline(args.model, "cpu")
        pipe.set_progress_bar_config(disable=True)
        if variant == "subset":
            use_self_layers(pipe, args.keep.split(","))
        records = run(pipe, cases, ["lusd"])
        results[variant] = {"self_layers": pipe.mask_layers.self_, **summarize(records)["lusd"]}
        summary = results[variant]["all"]
        print(
            f"{variant}: success {summary['success']:.1%}, bg {summary['bg_change']:.2f}, "
            f"mask localised {summary.get('mask_localised', float('nan')):.0%}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"mask_self_layers_{args.name}.json"
    payload = {"model": args.model or "shipped", "tuning_seed": TUNING_SEED, **results}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
