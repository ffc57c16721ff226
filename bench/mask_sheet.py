"""Where the LUSD mask sits: source | mask over the source | output, 12 cases of each kind.

Takes the first 12 add, colour and shape cases of the reported benchmark cases (seed 1000),
edits each as the benchmark does (LUSD preset, the model's own defaults, raw output, the
same generator seed) and writes bench/results/mask_sheet.png (one column group per kind,
each row labelled with the oracle's verdict and the mask's localisation) and
bench/results/mask_sheet.json.

    python bench/mask_sheet.py [--model FOLDER] [--per-kind 12]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lusd.loading import load_pipeline
from lusd.shapes.edits import EDIT_KINDS, edit_success, make_cases
from lusd.shapes.mask_metrics import mask_localisation
from shapes_lab.edit_bench import REPORT_SEED, edit_case

SCALE = 2  # 64-px images drawn at 128 px
LABEL = 14


def overlay(source: Image.Image, mask: Image.Image) -> Image.Image:
    """The source greyed, the mask in red on top (opacity = mask value)."""
    grey = np.asarray(source.convert("L").convert("RGB"), dtype=np.float32) * 0.6
    m = np.asarray(mask.convert("L").resize(source.size, Image.Resampling.BILINEAR), np.float32)
    m = (m / 255.0)[..., None]
    red = np.array([255.0, 30.0, 30.0])
    return Image.fromarray((grey * (1 - m) + red * m).clip(0, 255).astype(np.uint8))


def label(rec: dict) -> str:
    verdict = "ok" if rec["success"] else "fail"
    if "mask_ratio" in rec:
        return f"{verdict}  ratio {rec['mask_ratio']:.1f}"
    if "mask_add_share" in rec:
        return f"{verdict}  share {rec['mask_add_share']:.0%}"
    return verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--per-kind", type=int, default=12)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    pipe = load_pipeline(args.model, "cpu")
    pipe.set_progress_bar_config(disable=True)
    cases = list(enumerate(make_cases(6 * args.per_kind, REPORT_SEED)))
    side = 64 * SCALE
    sheet = Image.new(
        "RGB", (3 * 3 * side + 2 * side // 4, args.per_kind * (side + LABEL)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    records = []
    for k, kind in enumerate(EDIT_KINDS):
        chosen = [(i, c) for i, c in cases if c.kind == kind][: args.per_kind]
        for row, (index, case) in enumerate(chosen):
            image = case.image()
            out = edit_case(pipe, case, image, "lusd", index)
            raw, mask = out.images[0], out.masks[0]
            rec = {
                "case": case.case_id,
                "kind": kind,
                "source_prompt": case.source_prompt,
                "target_prompt": case.target_prompt,
                "focus": out.focus_words,
                "success": bool(edit_success(case, raw)),
                **mask_localisation(image, raw, mask, case.source_prompt, case.target_prompt),
            }
            records.append(rec)
            x0 = k * (3 * side + side // 4)
            y0 = row * (side + LABEL)
            for j, tile in enumerate((image, overlay(image, mask), raw)):
                sheet.paste(
                    tile.resize((side, side), Image.Resampling.NEAREST), (x0 + j * side, y0)
                )
            draw.text((x0 + 2, y0 + side), f"{kind}: {label(rec)}", fill="black")
    args.out.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out / "mask_sheet.png")
    (args.out / "mask_sheet.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {args.out / 'mask_sheet.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
