"""What LUSD's add edits need on the shapes model: less pull back to the source, or larger steps?

Runs the 24 add cases among the first 72 cases of the tuning seed (seed 7; the reported
cases use another seed) with LUSD at the tenth session's step scale (s_high 0.05), with
lambda_reg 0, with larger step scales (0.15, and 0.4: the shipped one since the eleventh
session), with 0.15 and lambda_reg 0 together, and DDS for reference; every variant keeps
the shipped lambda_reg 0.1 unless it says otherwise. Writes
bench/results/shapes_add_diagnosis.json.

    python bench/add_edit_diagnosis.py
"""

from __future__ import annotations

import json
from pathlib import Path

from lusd.loading import load_pipeline
from lusd.shapes.edits import make_cases
from shapes_lab.edit_bench import run, summarize
from shapes_lab.tune import TUNING_SEED

VARIANTS = {
    "s_high 0.05": {"scale_high": 0.05, "scale_low": 0.005},
    "s_high 0.05, lambda_reg 0": {"scale_high": 0.05, "scale_low": 0.005, "lambda_reg": 0.0},
    "s_high 0.15": {"scale_high": 0.15, "scale_low": 0.015},
    "s_high 0.15, lambda_reg 0": {"scale_high": 0.15, "scale_low": 0.015, "lambda_reg": 0.0},
    "s_high 0.4": {"scale_high": 0.4, "scale_low": 0.04},
}


def main() -> None:
    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    cases = [c for c in make_cases(72, TUNING_SEED) if c.kind == "add"]
    result = {"seed": TUNING_SEED, "n_cases": len(cases), "lusd": {}}
    for name, overrides in VARIANTS.items():
        entry = summarize(run(pipe, cases, ["lusd"], overrides=overrides))["lusd"]["all"]
        result["lusd"][name] = {"overrides": overrides, **entry}
        print(name, entry, flush=True)
    result["dds"] = summarize(run(pipe, cases, ["dds"]))["dds"]["all"]
    print("dds", result["dds"], flush=True)
    out = Path("bench/results/shapes_add_diagnosis.json")
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
