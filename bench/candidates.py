"""What a candidate costs: K candidates of one edit in one batched loop against the same
K seeds run one by one, and the judge's own time (docs/performance.md, "Candidates").

Held-out shapes cases (the benchmark's seed), the shipped model's LUSD defaults, through
the real edit path (``lusd.edit_path.run_edit``), on the same machine and thread count.
How well the judge picks is measured by bench/judge.py (docs/judge.md).

    python bench/candidates.py [--cases 3] [--k 4] [--threads 1]
writes bench/results/candidates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

from lusd.config import preset_config  # noqa: E402
from lusd.edit_path import EditRequest, run_edit  # noqa: E402
from lusd.loading import load_pipeline  # noqa: E402
from lusd.shapes.edits import make_cases  # noqa: E402

RESULTS = Path(__file__).parent / "results"
#: Held-out cases: the seed the shapes benchmark reports on (tuning uses other seeds).
CASE_SEED = 1000


def cost(pipe, cases, k: int) -> dict:
    """Seconds per candidate: batched (with and without the judge) and run one by one."""
    config = preset_config("lusd", pipe.default_config)
    batched, separate, judge = [], [], []
    for case in cases:
        args = (case.image(), case.source_prompt, case.target_prompt, config)
        started = time.perf_counter()
        record = run_edit(pipe, EditRequest(*args, seed=0, num_candidates=k))
        batched.append(time.perf_counter() - started)
        judge.append(record.stats["judge"]["seconds"])
        started = time.perf_counter()
        for seed in range(k):
            run_edit(pipe, EditRequest(*args, seed=seed))
        separate.append(time.perf_counter() - started)
        print(case.case_id, batched[-1], judge[-1], separate[-1], flush=True)
    count = k * len(cases)
    return {
        "k": k,
        "cases": [case.case_id for case in cases],
        "seconds_per_candidate_batched": sum(batched) / count,
        "seconds_per_candidate_batched_without_judge": (sum(batched) - sum(judge)) / count,
        "seconds_per_separate_run": sum(separate) / count,
        "ratio_with_judge": sum(batched) / sum(separate),
        "ratio_without_judge": (sum(batched) - sum(judge)) / sum(separate),
        "judge_seconds_per_candidate": sum(judge) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "candidates.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    result = {
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "case_seed": CASE_SEED,
        "cost": cost(pipe, make_cases(args.cases, CASE_SEED), args.k),
        "load_average_after": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
