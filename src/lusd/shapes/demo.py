"""`lusd demo`: LUSD edits of a rendered scene with the shipped model, as one sheet: an add
(four candidates, the judge's pick shown; then with a region), a colour change and a shape
change."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from lusd.config import preset_config
from lusd.edit_path import EditRequest, run_edit
from lusd.regions import Region
from lusd.shapes.edits import EditCase, edit_success, prompt_of
from lusd.shapes.oracle import describe
from lusd.shapes.world import POSITIONS, Obj, Scene, object_phrase, render

log = logging.getLogger(__name__)

#: The demo scene: a red circle on the left and a blue square on the top right, on white.
DEMO_SCENE = Scene(
    "white",
    (Obj("red", "circle", "large", 3), Obj("blue", "square", "large", 2)),
)


def demo_cases(scene: Scene = DEMO_SCENE) -> list[EditCase]:
    """One add, one colour change and one shape change of ``scene``."""
    objs = list(scene.objects)
    first, rest = objs[0], objs[1:]
    other_colors = [c for c in ("green", "yellow", "purple") if c not in {o.color for o in objs}]
    recolored = Obj(other_colors[0], first.shape, first.size, first.cell)
    new_shape = "triangle" if first.shape != "triangle" else "circle"
    reshaped = Obj(first.color, new_shape, first.size, first.cell)
    free = [c for c in (7, 6, 8, 1, 0, 4, 5, 3, 2) if c not in {o.cell for o in objs}][0]
    added = Obj(other_colors[-1], "triangle", "large", free)
    src = prompt_of(objs, scene.background)
    mk = lambda kind, after: EditCase(  # noqa: E731
        f"demo-{kind}", kind, scene, src, prompt_of(after, scene.background), tuple(after)
    )
    return [
        mk("add", [*objs, added]),
        mk("color", [recolored, *rest]),
        mk("shape", [reshaped, *rest]),
    ]


#: Candidates of the demo's plain add: the judge picks one, the sheet shows them all.
DEMO_CANDIDATES = 4


@dataclass
class CandidateView:
    """One candidate of an edit: its seed, picture, the judge's score, the oracle's verdict."""

    seed: int
    image: Image.Image
    score: float
    success: bool


@dataclass
class DemoResult:
    case: EditCase
    edited: Image.Image
    mask: Image.Image
    before: str
    after: str
    success: bool
    seconds: float
    focus: list[str]
    #: where the edit was allowed ("" for anywhere)
    region: str = ""
    #: every candidate, best first by the judge (empty for a single-candidate edit)
    candidates: list[CandidateView] = dataclasses.field(default_factory=list)


def named_cell_prompt(case: EditCase) -> str:
    """An add's target prompt with the new object's cell named ("... on the bottom ...")."""
    *kept, new = case.expected
    parts = [f"a {o.color} {o.shape}" for o in kept] + [object_phrase(new, size=False)]
    return " and ".join(parts) + f" on a {case.scene.background} background"


def cell_region(cell: int) -> Region:
    """A shapes-world grid cell as a region (a box in fractions of the picture)."""
    col, row = cell % 3, cell // 3
    return Region.from_box((col / 3, row / 3, (col + 1) / 3, (row + 1) / 3))


def run_demo(
    pipe, seed: int = 0, steps: int | None = None, on_step: Callable[[int, int], None] | None = None
) -> list[DemoResult]:
    """Run the demo edits with the model's own LUSD defaults. The add runs twice: as the
    words alone say it, with DEMO_CANDIDATES candidates of which the judge picks one, then
    told where: its cell named in the target prompt and given as the region
    (docs/regions.md). The oracle judges every result, the judge's pick included."""
    add, *changes = demo_cases()
    new = add.expected[-1]
    told = dataclasses.replace(add, target_prompt=named_cell_prompt(add))
    runs = [(add, None, DEMO_CANDIDATES)]
    runs += [(told, (cell_region(new.cell), f"the {POSITIONS[new.cell]} cell"), 1)]
    runs += [(case, None, 1) for case in changes]
    overrides = {} if steps is None else {"num_steps": steps}
    config = preset_config("lusd", pipe.default_config, **overrides)
    results = []
    for case, where, candidates in runs:
        image = case.image()
        started = time.perf_counter()
        region, label = where or (None, "")
        request = EditRequest(
            image, case.source_prompt, case.target_prompt, config, seed=seed, region=region,
            num_candidates=candidates,
        )  # fmt: skip
        out = run_edit(pipe, request, progress=on_step)
        views = [
            CandidateView(c.seed, c.image, c.score, edit_success(case, c.image))
            for c in sorted(out.candidates, key=lambda c: -c.score)
        ]
        results.append(
            DemoResult(
                case,
                out.image,
                out.mask,
                describe(image),
                describe(out.image),
                edit_success(case, out.image),
                time.perf_counter() - started,
                list(out.focus_words),
                label,
                views,
            )
        )
    return results


def contact_sheet(results: list[DemoResult], scale: int = 4) -> Image.Image:
    """Rows of input | output | mask, upscaled (nearest) with a caption line above each row;
    an edit with candidates adds a row of them, best first, with scores and verdicts."""
    side = 64 * scale
    pad, text_h = 8, 30
    rows: list[tuple[list[str], list[Image.Image]]] = []
    for r in results:
        mark = "OK" if r.success else "FAIL"
        where = f" (region: {r.region})" if r.region else ""
        best = f" (judge's pick of {len(r.candidates)})" if r.candidates else ""
        lines = [f"[{mark}] {r.case.source_prompt}{where}{best}", f"  -> {r.case.target_prompt}"]
        rows.append((lines, [render(r.case.scene), r.edited, r.mask]))
        if r.candidates:
            scores = "  ".join(
                f"seed {c.seed}: {c.score:.2f} {'OK' if c.success else 'FAIL'}"
                for c in r.candidates
            )
            rows.append((["  candidates, best first by the judge:", f"  {scores}"],
                         [c.image for c in r.candidates]))  # fmt: skip
    columns = max(len(tiles) for _, tiles in rows)
    width = columns * side + (columns + 1) * pad
    sheet = Image.new("RGB", (width, len(rows) * (side + text_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for lines, tiles in rows:
        draw.text((pad, y), lines[0], fill=(0, 0, 0))
        draw.text((pad, y + 13), lines[1], fill=(0, 0, 160))
        y += text_h
        for i, tile in enumerate(tiles):
            tile = tile.convert("RGB").resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(tile, (pad + i * (side + pad), y))
        y += side + pad
    return sheet


def write_sheet(results: list[DemoResult], path: Path) -> Path:
    from lusd.disclosure import tool_xmp
    from lusd.images import save_image

    edits = [f"{r.case.source_prompt} -> {r.case.target_prompt}" for r in results]
    meta = {f"edit{i}": edit for i, edit in enumerate(edits)}
    return save_image(contact_sheet(results), path, metadata=meta, xmp=tool_xmp(edits))


#: Scenes of the web app's examples (one edit each: add, colour change, shape change).
EXAMPLE_SCENES: tuple[Scene, ...] = (
    DEMO_SCENE,
    Scene("black", (Obj("yellow", "triangle", "large", 4),)),
    Scene("gray", (Obj("green", "square", "large", 0), Obj("orange", "circle", "large", 8))),
)


def write_examples(folder: Path) -> list[Path]:
    """Rendered example scenes as PNGs carrying ``lusd:source_prompt``/``lusd:target_prompt``."""
    from lusd.images import save_image

    paths = []
    for i, scene in enumerate(EXAMPLE_SCENES):
        for case in demo_cases(scene)[i % 3 : i % 3 + 1]:  # add, colour, shape in turn
            name = f"{i}-{case.kind}.png"
            meta = {
                "lusd:source_prompt": case.source_prompt,
                "lusd:target_prompt": case.target_prompt,
            }
            paths.append(save_image(render(scene), folder / name, metadata=meta))
    return paths
