"""Regions on the shapes world, judged by the oracle (docs/results.md, "Telling it where").

Two experiments, the same seeds for every preset:
- named-cell adds: held-out add cases whose target prompt names the new object's cell
  ("... and a blue square on the top right ..."); each edit runs without a region and
  with the named cell as the region; success = every object, the new one in its cell;
- big photos: a 4x4 grid of shapes scenes as one 256-px picture, one tile edited with
  that tile as the region, judged on that tile: crop-and-stitch (the default crop_margin
  and 0.25), --no-crop (the whole picture at the model's 64 px), and the 64-px tile alone.
Every region run also counts the pixels changed outside the region (must be 0).

    python bench/regions.py [--cases 24] [--presets lusd,dds,...]
writes bench/results/regions.json (about 35 minutes on one CPU thread without SDS).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lusd.config import preset_config
from lusd.edit_path import EditRequest, run_edit
from lusd.loading import load_pipeline
from lusd.regions import Region
from lusd.shapes.demo import cell_region, named_cell_prompt
from lusd.shapes.edits import EditCase, edit_success, make_cases, prompt_of
from lusd.shapes.oracle import detect
from lusd.shapes.world import render, sample_scene

RESULTS = Path(__file__).parent / "results"
#: Held-out cases: the seed the shapes benchmark reports on (tuning uses 7).
CASE_SEED = 1000
GRID = 4
TILE = 64


def in_named_cell(case: EditCase, edited: Image.Image) -> bool:
    """Every expected object (the new one in its named cell) and nothing else."""
    found = sorted((d.color, d.shape, d.cell) for d in detect(edited))
    return found == sorted((o.color, o.shape, o.cell) for o in case.expected)


def changed_outside(before: Image.Image, after: Image.Image, region: Region | None) -> int:
    if region is None:
        return 0
    allowed = region.pixels(before.size)
    diff = np.any(np.asarray(before) != np.asarray(after), axis=2)
    return int((diff & ~allowed).sum())


def edit(pipe, image, source, target, preset, seed, region=None, crop=True):
    config = preset_config(preset, pipe.default_config)
    request = EditRequest(image, source, target, config, preset, seed, region=region, crop=crop)
    return run_edit(pipe, request)


def named_cells(pipe, cases: list[EditCase], presets: list[str]) -> list[dict]:
    rows = []
    for index, case in enumerate(cases):
        image, target = case.image(), named_cell_prompt(case)
        region = cell_region(case.expected[-1].cell)
        for preset in presets:
            for where in (None, region):
                start = time.perf_counter()
                out = edit(
                    pipe, image, case.source_prompt, target, preset, CASE_SEED + index, where
                )
                rows.append(
                    {
                        "case": case.case_id,
                        "preset": preset,
                        "region": where is not None,
                        "success": in_named_cell(case, out.image),
                        "added_anywhere": edit_success(case, out.image),
                        "changed_outside": changed_outside(image, out.image, where),
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
        print(f"named cells: {index + 1}/{len(cases)}", flush=True)
    return rows


def big_photo(case: EditCase, index: int) -> tuple[Image.Image, tuple[int, int]]:
    """A 4x4 grid of scenes with the case's scene at a seeded tile; (picture, tile origin)."""
    rng = np.random.default_rng(CASE_SEED + index)
    picture = Image.new("RGB", (GRID * TILE, GRID * TILE))
    slot = int(rng.integers(GRID * GRID))
    for i in range(GRID * GRID):
        scene = case.scene if i == slot else sample_scene(rng, n_objects=int(rng.integers(1, 3)))
        picture.paste(render(scene), ((i % GRID) * TILE, (i // GRID) * TILE))
    return picture, ((slot % GRID) * TILE, (slot // GRID) * TILE)


def big_photos(pipe, cases: list[EditCase], presets: list[str], default_margin: float):
    rows = []
    for index, case in enumerate(cases):
        picture, (x, y) = big_photo(case, index)
        tile_box = (x, y, x + TILE, y + TILE)
        region = Region.from_box(tile_box)
        seed = CASE_SEED + index
        for preset in presets:
            variants = {
                f"crop (margin {default_margin:g})": dict(region=region, crop=True, margin=None),
                "crop (margin 0.25)": dict(region=region, crop=True, margin=0.25),
                "no crop": dict(region=region, crop=False, margin=None),
                "tile alone": dict(region=None, crop=True, margin=None),
            }
            for name, v in variants.items():
                start = time.perf_counter()
                image = case.image() if name == "tile alone" else picture
                config = preset_config(preset, pipe.default_config)
                if v["margin"] is not None:
                    config = config.replace(crop_margin=v["margin"])
                request = EditRequest(
                    image, case.source_prompt, case.target_prompt, config, preset, seed,
                    region=v["region"], crop=v["crop"],
                )  # fmt: skip
                out = run_edit(pipe, request)
                tile = out.image if name == "tile alone" else out.image.crop(tile_box)
                rows.append(
                    {
                        "case": case.case_id,
                        "kind": case.kind,
                        "preset": preset,
                        "variant": name,
                        "success": edit_success(case, tile),
                        "changed_outside": changed_outside(image, out.image, v["region"]),
                        "working_size": out.stats["working_size"],
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
        print(f"big photos: {index + 1}/{len(cases)}", flush=True)
    return rows


def rates(rows: list[dict], *keys: str) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for row in rows:
        name = " / ".join(str(row[k]) for k in keys)
        entry = table.setdefault(name, {"n": 0, "success": 0, "changed_outside_max": 0})
        entry["n"] += 1
        entry["success"] += row["success"]
        entry["changed_outside_max"] = max(entry["changed_outside_max"], row["changed_outside"])
    for entry in table.values():
        entry["rate"] = round(entry["success"] / entry["n"], 3)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--presets", default="lusd,dds,lusd-no-mask,lusd-no-filter,lusd-no-norm")
    parser.add_argument("--big-presets", default="lusd,dds")
    parser.add_argument("--output", type=Path, default=RESULTS / "regions.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    every = make_cases(9 * args.cases, CASE_SEED)
    adds = [c for c in every if c.kind == "add"][: args.cases]
    changes = every[: args.cases]
    start = time.perf_counter()
    named = named_cells(pipe, adds, args.presets.split(","))
    big = big_photos(pipe, changes, args.big_presets.split(","), pipe.default_config.crop_margin)
    result = {
        "model": "shapes (shipped)",
        "case_seed": CASE_SEED,
        "threads": 1,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "named_cell_adds": rates(named, "preset", "region"),
        "big_photos": rates(big, "preset", "variant"),
        "big_photos_by_kind": rates(big, "preset", "variant", "kind"),
        "rows": {"named_cell_adds": named, "big_photos": big},
        "source_prompt_example": prompt_of(adds[0].scene.objects, adds[0].scene.background),
        "target_prompt_example": named_cell_prompt(adds[0]),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("named_cell_adds", "big_photos")}, indent=1))


if __name__ == "__main__":
    main()
