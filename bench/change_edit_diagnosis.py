"""How LUSD's colour and shape changes fail on the shapes model, next to DDS's.

Runs the colour and shape cases among the 90 tuning cases (seed 7; the reported cases use
another seed) with LUSD at the shipped configuration, with LUSD focused on the changed word
itself (for a colour change the colour word, where the paper's rule picks the noun), with
LUSD without progressive narrowing (the mask applies fully from the second iteration), and
with DDS. Sorts each outcome by what the oracle sees: ``success``; ``unchanged`` (the
source objects, as they were); ``wrong value`` (the edited object kept its cell and its
other attribute, but took a third colour or shape); ``fewer objects`` (lost or merged) or
``more objects``; ``other`` (anything else, e.g. another object changed or an object
moved). Each case is edited as the benchmark driver edits it (raw output, the same
generator seed), so LUSD's successes match the tuning run's. Writes
bench/results/shapes_change_diagnosis.json.

    python bench/change_edit_diagnosis.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lusd.loading import load_pipeline
from lusd.shapes.edits import EditCase, edit_success, make_cases
from lusd.shapes.oracle import detect
from lusd.shapes.world import Obj
from shapes_lab.edit_bench import edit_case
from shapes_lab.tune import TUNING_SEED


def changed_object(case: EditCase) -> Obj:
    """The object a colour or shape change asks for."""
    return next(o for o, s in zip(case.expected, case.scene.objects, strict=True) if o != s)


def outcome(case: EditCase, edited) -> str:
    if edit_success(case, edited):
        return "success"
    found = sorted((d.color, d.shape, d.cell) for d in detect(edited))
    if len(found) != len(case.expected):
        return "fewer objects" if len(found) < len(case.expected) else "more objects"
    if found == sorted((o.color, o.shape, o.cell) for o in case.scene.objects):
        return "unchanged"
    kept = "shape" if case.kind == "color" else "color"
    changed = changed_object(case)
    others = sorted((o.color, o.shape, o.cell) for o in case.expected if o is not changed)
    rest = [f for f in found if f in others]
    loose = [f for f in found if f not in others]
    same_place = (
        len(rest) == len(others)
        and len(loose) == 1
        and loose[0][2] == changed.cell
        and loose[0][0 if kept == "color" else 1] == getattr(changed, kept)
    )
    return "wrong value" if same_place else "other"


def changed_word(case: EditCase) -> list[str]:
    return [getattr(changed_object(case), case.kind)]


VARIANTS = {
    "lusd": ("lusd", {}, None),
    "lusd, focus on the changed word": ("lusd", {}, changed_word),
    "lusd, no progressive narrowing": ("lusd", {"progressive_mask": False}, None),
    "dds": ("dds", {}, None),
}


def main() -> None:
    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    indexed = [(i, c) for i, c in enumerate(make_cases(90, TUNING_SEED)) if c.kind != "add"]
    result: dict = {"seed": TUNING_SEED, "n_cases": len(indexed)}
    for name, (preset, overrides, focus) in VARIANTS.items():
        tallies = {"color": Counter(), "shape": Counter()}
        for i, case in indexed:
            words = None if focus is None else focus(case)
            out = edit_case(pipe, case, case.image(), preset, i, overrides, focus=words)
            tallies[case.kind][outcome(case, out.images[0])] += 1
        result[name] = {kind: dict(t) for kind, t in tallies.items()}
        print(name, result[name], flush=True)
    out_path = Path("bench/results/shapes_change_diagnosis.json")
    out_path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
