"""Held-out benchmark of the candidate judge (lusd.judge) on shapes-world edits.

    PYTHONPATH=src python bench/judge.py                 # 18 cases (seed 1000) x 8 seeds
    PYTHONPATH=src python bench/judge.py --cases 36 --cases-seed 7 --seeds 4 --name judge_tune

Generates the candidates with LUSD at the shapes model's defaults (or reads them from
.cache/judge/, see bench/judge_cache.py), scores each case's candidates with the judge's
default settings, and compares the judge's pick among the first K seeds (K = 1, 2, 4, 8)
with the oracle (lusd.shapes.edits.edit_success), which the judge never sees. Writes
bench/results/<name>.json: per case and seed the success, score and parts; the summary
(pick success, any-of-K ceiling, random-pick expectation, the share of top picks flagged for
review at the default threshold and the share of failed top picks among them).

On this machine (2-core CPU shared with other jobs, one torch thread): generating the 144
held-out candidates took about 14 minutes (3.5 s an edit when the CPU is free); judging them
took 3.7 minutes, 1.5 s per candidate (``judge_seconds`` in the output). With the
candidates cached, a rerun takes only the judging.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lusd.distill import Conditioning
from lusd.judge import (
    DEFAULT_THRESHOLD,
    SCORE_MAX,
    SCORE_MIN,
    JudgeSettings,
    judge_candidates,
    unet_rows_per_candidate,
)
from lusd.loading import load_pipeline
from lusd.shapes.edits import make_cases

RESULTS = Path(__file__).resolve().parent / "results"


def load_candidates(n_cases: int, cases_seed: int, seeds: int, pipe) -> list[list[dict]]:
    from judge_cache import CACHE, generate  # bench/ is on sys.path when run as a script

    generate(n_cases, cases_seed, range(seeds), pipe)
    folder = CACHE / str(cases_seed)
    return [
        [torch.load(folder / f"{i:03d}_{s}.pt", weights_only=False) for s in range(seeds)]
        for i in range(n_cases)
    ]


def pick_stats(success: np.ndarray, scores: np.ndarray, ks: list[int]) -> dict:
    """Per K: the judge's pick among the first K seeds, any-of-K, random pick (expected)."""
    out = {}
    for k in ks:
        picks = [success[c, int(np.argmax(scores[c, :k]))] for c in range(len(success))]
        out[str(k)] = {
            "judge_pick": float(np.mean(picks)),
            "any_of_k": float(success[:, :k].any(1).mean()),
            "random_pick": float(success[:, :k].mean()),
        }
    return out


def flag_stats(success: np.ndarray, scores: np.ndarray, k: int, threshold: float) -> dict:
    """Flag an edit when its top pick (among the first k seeds) scores below threshold."""
    top = np.argmax(scores[:, :k], 1)
    top_ok = success[np.arange(len(success)), top]
    top_score = scores[np.arange(len(success)), top]
    flagged = top_score < threshold
    failed = ~top_ok
    return {
        "k": k,
        "threshold": threshold,
        "flagged_share": float(flagged.mean()),
        "failures_caught": float((flagged & failed).sum() / max(failed.sum(), 1)),
        "top_pick_failures": int(failed.sum()),
        "success_when_not_flagged": float(top_ok[~flagged].mean()) if (~flagged).any() else None,
        "candidates_flagged_share": float((scores[:, :k] < threshold).mean()),
        "failed_candidates_caught": float(
            (scores[:, :k] < threshold)[~success[:, :k]].mean() if (~success[:, :k]).any() else 0.0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=18)
    parser.add_argument("--cases-seed", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--name", default="judge")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = load_pipeline(None)
    settings = JudgeSettings()
    started = time.perf_counter()
    items = load_candidates(args.cases, args.cases_seed, args.seeds, pipe)
    generated = time.perf_counter() - started
    cases = make_cases(args.cases, args.cases_seed)
    rows, judge_seconds, passes = [], 0.0, 0
    for case, cands in zip(cases, items, strict=True):
        first = cands[0]
        result = judge_candidates(
            pipe,
            first["source_latents"],
            torch.cat([c["latents"] for c in cands]),
            Conditioning(first["cond_source"], first["cond_target"]),
            masks=torch.stack([c["mask"] for c in cands]),
            settings=settings,
        )
        judge_seconds += result.seconds
        passes += result.unet_passes
        rows.append(
            {
                "case_id": case.case_id,
                "kind": case.kind,
                "source_prompt": case.source_prompt,
                "target_prompt": case.target_prompt,
                "candidates": [
                    {
                        "seed": c["seed"],
                        "success": c["success"],
                        "score": result.scores[j],
                        **{name: values[j] for name, values in result.parts.items()},
                        "background_change": c["bg_change"],
                    }
                    for j, c in enumerate(cands)
                ],
            }
        )
    success = np.array([[c["success"] for c in r["candidates"]] for r in rows])
    scores = np.array([[c["score"] for c in r["candidates"]] for r in rows])
    ks = [k for k in (1, 2, 4, 8) if k <= args.seeds]
    n_cands = success.size
    summary = {
        "cases": args.cases,
        "cases_seed": args.cases_seed,
        "seeds": args.seeds,
        "success_at_k": pick_stats(success, scores, ks),
        "top_pick_success": float(success[np.arange(len(success)), scores.argmax(1)].mean()),
        "flags": {str(k): flag_stats(success, scores, k, args.threshold) for k in ks},
        "score_range": [SCORE_MIN, SCORE_MAX],
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "unet_rows_per_candidate": unet_rows_per_candidate(settings),
        "unet_passes": passes,
        "judge_seconds": judge_seconds,
        "judge_seconds_per_candidate": judge_seconds / n_cands,
        "generate_seconds": generated,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
