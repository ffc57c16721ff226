"""Seeded shapes-world edit cases and their oracle judgement (SHAPES_WORLD.md, "Edits")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lusd.shapes.oracle import Detected, detect, object_mask
from lusd.shapes.world import COLORS, SHAPES, Obj, Scene, render, sample_scene

EDIT_KINDS: tuple[str, ...] = ("add", "color", "shape")
#: Background pixels closer than this to any object (input or output) are not counted.
BG_MARGIN = 3


def prompt_of(objects: list[Obj] | tuple[Obj, ...], background: str) -> str:
    """Edit-prompt wording: ``a <color> <shape> and ... on a <bg> background``.

    No positions: the objects are named by colour and shape (as in SHAPES_WORLD.md's
    examples), and an added object is judged wherever it appears; the shapes model also
    ignores position words (docs/shapes-model.md).
    """
    parts = [f"a {o.color} {o.shape}" for o in objects]
    return " and ".join(parts) + f" on a {background} background"


@dataclass(frozen=True)
class EditCase:
    """One edit: the source scene, the prompts, and what the oracle must find afterwards."""

    case_id: str
    kind: str
    scene: Scene
    source_prompt: str
    target_prompt: str
    expected: tuple[Obj, ...]  # objects (colour, shape, cell) after a correct edit

    def image(self) -> Image.Image:
        return render(self.scene)


def make_case(rng: np.random.Generator, kind: str, n_source: int, case_id: str) -> EditCase:
    scene = sample_scene(rng, n_objects=n_source)
    objs = list(scene.objects)
    if kind == "add":
        free = [c for c in range(9) if c not in {o.cell for o in objs}]
        new = Obj(
            str(rng.choice(list(COLORS))),
            str(rng.choice(SHAPES)),
            "large",
            int(rng.choice(free)),
        )
        after = [*objs, new]
    else:
        k = int(rng.integers(len(objs)))
        old = objs[k]
        if kind == "color":
            new_val = str(rng.choice([c for c in COLORS if c != old.color]))
            changed = Obj(new_val, old.shape, old.size, old.cell, old.dx, old.dy)
        elif kind == "shape":
            new_val = str(rng.choice([s for s in SHAPES if s != old.shape]))
            changed = Obj(old.color, new_val, old.size, old.cell, old.dx, old.dy)
        else:
            raise ValueError(f"unknown edit kind {kind!r}")
        after = objs[:k] + [changed] + objs[k + 1 :]
    return EditCase(
        case_id,
        kind,
        scene,
        prompt_of(objs, scene.background),
        prompt_of(after, scene.background),
        tuple(after),
    )


def make_cases(n: int, seed: int) -> list[EditCase]:
    """``n`` cases cycling add / colour / shape and 1 / 2 source objects, seeded."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        kind = EDIT_KINDS[i % 3]
        n_source = 1 + (i // 3) % 2
        cases.append(make_case(rng, kind, n_source, f"s{seed}-{i:03d}-{kind}"))
    return cases


def _key(o: Obj | Detected) -> tuple[str, str, int]:
    return (o.color, o.shape, o.cell)


def edit_success(case: EditCase, edited: Image.Image) -> bool:
    """Every expected object found (colour, shape, cell; an added object's cell is free) and
    nothing else: exactly one object per expected one."""
    found = detect(edited)
    if len(found) != len(case.expected):
        return False
    remaining = [_key(d) for d in found]
    expected = list(case.expected)
    if case.kind == "add":  # the new object may appear in any cell
        new = expected.pop()
    for o in expected:
        if _key(o) not in remaining:
            return False
        remaining.remove(_key(o))
    if case.kind == "add":
        return len(remaining) == 1 and remaining[0][:2] == (new.color, new.shape)
    return not remaining


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    h, w = mask.shape
    pad = np.pad(mask, radius)
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= pad[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def background_change(source: Image.Image, edited: Image.Image) -> float:
    """Mean |difference| (0-255) over input-background pixels > 3 px from every object
    found in the input or the output."""
    if edited.size != source.size:
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    near = _dilate(object_mask(source) | object_mask(edited), BG_MARGIN)
    a = np.asarray(source.convert("RGB"), dtype=np.float64)
    b = np.asarray(edited.convert("RGB"), dtype=np.float64)
    keep = ~near
    return float(np.abs(a - b)[keep].mean()) if keep.any() else 0.0
