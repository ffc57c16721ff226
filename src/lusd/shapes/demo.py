"""`lusd demo`: LUSD edits of a rendered scene with the shipped model, as one sheet: an add
(without and with a region), a colour change and a shape change."""

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
    words alone say it, then told where: its cell named in the target prompt and given
    as the region (docs/regions.md)."""
    add, *changes = demo_cases()
    new = add.expected[-1]
    told = dataclasses.replace(add, target_prompt=named_cell_prompt(add))
    runs = [(add, None), (told, (cell_region(new.cell), f"the {POSITIONS[new.cell]} cell"))]
    runs += [(case, None) for case in changes]
    overrides = {} if steps is None else {"num_steps": steps}
    config = preset_config("lusd", pipe.default_config, **overrides)
    results = []
    for case, where in runs:
        image = case.image()
        started = time.perf_counter()
        region, label = where or (None, "")
        request = EditRequest(
            image, case.source_prompt, case.target_prompt, config, seed=seed, region=region
        )
        out = run_edit(pipe, request, progress=on_step)
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
            )
        )
    return results


def contact_sheet(results: list[DemoResult], scale: int = 4) -> Image.Image:
    """Rows of input | output | mask, upscaled (nearest) with a caption line above each row."""
    side = 64 * scale
    pad, text_h = 8, 30
    width = 3 * side + 4 * pad
    height = len(results) * (side + text_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for r in results:
        mark = "OK" if r.success else "FAIL"
        where = f" (region: {r.region})" if r.region else ""
        draw.text((pad, y), f"[{mark}] {r.case.source_prompt}{where}", fill=(0, 0, 0))
        draw.text((pad, y + 13), f"  -> {r.case.target_prompt}", fill=(0, 0, 160))
        y += text_h
        tiles = [render(r.case.scene), r.edited.convert("RGB"), r.mask.convert("RGB")]
        for i, tile in enumerate(tiles):
            sheet.paste(
                tile.resize((side, side), Image.Resampling.NEAREST), (pad + i * (side + pad), y)
            )
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
