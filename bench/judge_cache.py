"""Generate and cache LUSD candidates on shapes-world cases for the judge benchmark.

Each candidate keeps what the judge receives in production (the source latent, the prompt
embeddings, the final latent and LUSD's final mask) and the oracle's verdict.
Cached under ``.cache/judge/<cases_seed>/`` (git-ignored), one file per case and seed:

    PYTHONPATH=src python bench/judge_cache.py 18 1000 8    # cases, cases seed, seeds
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from lusd import distill
from lusd.config import preset_config
from lusd.edit_path import EditRequest, run_edit
from lusd.loading import load_pipeline
from lusd.shapes.edits import background_change, edit_success, make_cases

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "judge"


def _capture():
    """Wrap Distiller.run so the last call's inputs and outputs are kept."""
    stash: dict = {}
    original = distill.Distiller.run

    def run(self, source_latents, cond, *args, **kwargs):
        result = original(self, source_latents, cond, *args, **kwargs)
        stash.update(source=source_latents.clone(), cond=cond, result=result)
        return result

    distill.Distiller.run = run
    return stash


def generate(n_cases: int, cases_seed: int, seeds: range, pipe=None) -> Path:
    folder = CACHE / str(cases_seed)
    folder.mkdir(parents=True, exist_ok=True)
    pipe = pipe or load_pipeline(None)
    cfg = preset_config("lusd", pipe.default_config)
    stash = _capture()
    for i, case in enumerate(make_cases(n_cases, cases_seed)):
        for seed in seeds:
            path = folder / f"{i:03d}_{seed}.pt"
            if path.exists():
                continue
            start = time.perf_counter()
            req = EditRequest(case.image(), case.source_prompt, case.target_prompt, cfg, seed=seed)
            rec = run_edit(pipe, req)
            res = stash["result"]
            cond = stash["cond"]
            item = {
                "case_id": case.case_id,
                "kind": case.kind,
                "seed": seed,
                "source_latents": stash["source"],
                "cond_source": cond.source,
                "cond_target": cond.target,
                "latents": res.latents.clone(),
                "mask": None if res.mask is None else res.mask.float().clone(),
                "success": bool(edit_success(case, rec.image)),
                "bg_change": float(background_change(case.image(), rec.image)),
                "edit_seconds": time.perf_counter() - start,
            }
            torch.save(item, path)
            print(i, seed, item["success"], f"{item['edit_seconds']:.1f}s", flush=True)
    return folder


if __name__ == "__main__":
    torch.set_num_threads(1)
    n, cs, k = (int(a) for a in sys.argv[1:4])
    generate(n, cs, range(k))
