"""Oracle-judged quality of the shapes model: VAE read-back and text-to-image accuracy."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from lusd.shapes.oracle import (
    assign,
    background,
    classify_pixels,
    detect,
    parse_caption,
    scene_matches,
)
from lusd.shapes.world import caption, render, sample_scene
from shapes_lab.data import from_tensor, to_tensor

log = logging.getLogger(__name__)


@torch.no_grad()
def vae_quality(vae, n: int = 500, seed: int = 4321, batch: int = 50) -> dict[str, float]:
    """How well the VAE reconstructs ``n`` held-out rendered scenes.

    ``readback``: fraction the oracle reads exactly (objects and background).
    Artefacts: pixels whose oracle colour class differs from the input's, away from the
    edges (more than two pixels from any colour boundary, where anti-aliasing and a
    small blur are legitimate): ``stray_pixels`` per image on average, and
    ``images_with_artefacts``, the fraction of images with at least ``ARTEFACT_PIXELS``.
    """
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    ok, stray = 0, []
    dtype = next(vae.parameters()).dtype
    for i in range(0, n, batch):
        chunk = scenes[i : i + batch]
        originals = [render(s) for s in chunk]
        x = to_tensor(originals).to(dtype)
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.float()
        for image, original, scene in zip(from_tensor(rec), originals, chunk, strict=True):
            ok += scene_matches(image, scene)
            stray.append(stray_pixels(original, image))
    return {
        "readback": ok / n,
        "stray_pixels": float(np.mean(stray)),
        "images_with_artefacts": float(np.mean(np.array(stray) >= ARTEFACT_PIXELS)),
    }


#: An image "has artefacts" with at least this many stray pixels (a blob, not a speck).
ARTEFACT_PIXELS = 3


def stray_pixels(original, reconstruction) -> int:
    """Pixels of ``reconstruction`` whose oracle colour class differs from ``original``'s,
    counted only more than two pixels away from the original's colour boundaries."""
    want, got = classify_pixels(original), classify_pixels(reconstruction)
    pad = np.pad(want, 2, mode="edge")
    h, w = want.shape
    interior = np.ones_like(want, dtype=bool)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            interior &= pad[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] == want
    return int(((got != want) & interior).sum())


def eval_prompts(n: int = 200, seed: int = 2024) -> list[str]:
    """Seeded prompts: half single-object, half two-object, clause dropout as in training."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scene = sample_scene(rng, n_objects=1 if i < n // 2 else 2)
        out.append(caption(scene, rng, p_size=0.5, p_position=0.4, p_background=0.5))
    return out


#: what an object looks like (its cell aside)
_LOOKS = ("color", "shape", "size")


@dataclass
class Judgement:
    prompt: str
    n_objects: int
    objects_ok: bool
    background_named: bool
    background_ok: bool
    objects_ok_anywhere: bool = False  # right objects, positions not checked (a diagnostic)
    errors: tuple[str, ...] = ()  # why the objects are wrong (see ``_errors``)

    @property
    def ok(self) -> bool:
        return self.objects_ok and (self.background_ok or not self.background_named)


def judge(image, prompt: str) -> Judgement:
    """Objects right (exactly the asked ones, with size/cell when named); background if named."""
    expected, bg = parse_caption(prompt)
    found = detect(image)
    objects_ok = len(found) == len(expected) and assign(expected, found) is not None
    anywhere = [dataclasses.replace(e, cell=None) for e in expected]
    objects_ok_anywhere = len(found) == len(expected) and assign(anywhere, found) is not None
    bg_ok = bg is not None and background(image) == bg
    errors = () if objects_ok else _errors(expected, found, objects_ok_anywhere)
    return Judgement(
        prompt, len(expected), objects_ok, bg is not None, bg_ok, objects_ok_anywhere, errors
    )


def _errors(expected, found, right_anywhere: bool) -> tuple[str, ...]:
    """Why the objects are wrong: ``count`` (another number of objects), else the attributes
    drawn wrong. With one object, its wrong attributes (``cell`` among them); with more, the
    attributes some asked value of is missing from the picture, ``binding`` when every asked
    value is there but on the wrong objects, ``cell`` when only positions are wrong."""
    if len(found) != len(expected):
        return ("count",)
    if len(expected) == 1:
        e, f = expected[0], found[0]
        named = (k for k in (*_LOOKS, "cell") if getattr(e, k) is not None)
        return tuple(k for k in named if getattr(e, k) != getattr(f, k))
    if right_anywhere:
        return ("cell",)
    missing = tuple(
        k
        for k in _LOOKS
        if Counter(getattr(e, k) for e in expected if getattr(e, k) is not None)
        - Counter(getattr(f, k) for f in found)
    )
    return missing or ("binding",)


def summarize(judgements: list[Judgement]) -> dict[str, float]:
    def rate(items: list[bool]) -> float:
        return float(np.mean(items)) if items else float("nan")

    singles = [j for j in judgements if j.n_objects == 1]
    pairs = [j for j in judgements if j.n_objects == 2]
    return {
        "single_object": rate([j.objects_ok for j in singles]),
        "two_object": rate([j.objects_ok for j in pairs]),
        "background_when_named": rate([j.background_ok for j in judgements if j.background_named]),
        "all_correct": rate([j.ok for j in judgements]),
        "single_object_positions_aside": rate([j.objects_ok_anywhere for j in singles]),
        "two_object_positions_aside": rate([j.objects_ok_anywhere for j in pairs]),
        "single_object_errors": {
            kind: rate([kind in j.errors for j in singles]) for kind in ("count", *_LOOKS, "cell")
        },
        "two_object_errors": {
            kind: rate([kind in j.errors for j in pairs])
            for kind in ("count", *_LOOKS, "binding", "cell")
        },
        "n": len(judgements),
    }


def generation_eval(
    pipe, n: int = 200, seed: int = 2024, steps: int = 50, guidance: float = 7.5, batch: int = 25
) -> tuple[dict[str, float], list[Judgement], list]:
    """Generate ``n`` seeded prompts and judge them with the oracle."""
    from lusd.shapes.generate import generate

    prompts = eval_prompts(n, seed)
    images, judgements = [], []
    for i in range(0, n, batch):
        chunk = prompts[i : i + batch]
        imgs = generate(pipe, chunk, list(range(seed + i, seed + i + len(chunk))), steps, guidance)
        images += imgs
        judgements += [judge(im, p) for im, p in zip(imgs, chunk, strict=True)]
    return summarize(judgements), judgements, images


def position_probe(pipe, seeds: int = 8, steps: int = 30) -> dict[str, float]:
    """Does the prompt or the initial noise decide where the object goes?

    Draws "a large red circle <position>" for all nine positions with the same seed, for
    ``seeds`` seeds. ``asked_cell``: fraction drawn in the cell asked for (chance: 1/9).
    ``seed_cell``: per seed, the share of the nine images in that seed's most common
    cell (1.0 = the noise alone decides the position, 1/9 = the prompt does).
    """
    from lusd.shapes.generate import generate
    from lusd.shapes.world import POSITIONS, Obj, object_phrase

    prompts = [object_phrase(Obj("red", "circle", "large", c)) for c in range(len(POSITIONS))]
    asked, per_seed = 0, []
    for seed in range(seeds):
        images = generate(pipe, prompts, [seed] * len(prompts), steps, 7.5)
        cells = []
        for cell, image in enumerate(images):
            found = detect(image)
            cells.append(found[0].cell if len(found) == 1 else None)
            asked += cells[-1] == cell
        per_seed.append(Counter(cells).most_common(1)[0][1] / len(prompts))
    return {
        "asked_cell": asked / (seeds * len(prompts)),
        "seed_cell": float(np.mean(per_seed)),
        "seeds": seeds,
    }


def sample_grid(images: list, prompts: list[str], path, cols: int = 8, scale: int = 2) -> None:
    """A grid of generated images (first ``cols * 3``), the model's sample sheet."""
    from PIL import Image

    n = min(len(images), cols * 3)
    side = 64 * scale
    grid = Image.new("RGB", (cols * side, ((n + cols - 1) // cols) * side), (255, 255, 255))
    for i in range(n):
        tile = images[i].resize((side, side), Image.Resampling.NEAREST)
        grid.paste(tile, ((i % cols) * side, (i // cols) * side))
    grid.save(path)


def main(argv: list[str] | None = None) -> int:
    """Measure the shipped (or given) model; write JSON, sample grid and training curves."""
    import argparse
    import json
    import os
    import time
    from pathlib import Path

    p = argparse.ArgumentParser(prog="shapes_lab.model_quality")
    p.add_argument("--model", default=None)
    p.add_argument("--work", type=Path, default=None, help="training folder (for curves)")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--vae-scenes", type=int, default=500)
    p.add_argument("--out", type=Path, default=Path("bench/results/shapes_model_quality.json"))
    p.add_argument(
        "--samples-dir",
        type=Path,
        default=Path("bench/results/samples"),
        help="where the sample sheet and training curves go",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from lusd.shapes.generate import load_t2i

    pipe = load_t2i(args.model)
    started = time.perf_counter()
    vae = vae_quality(pipe.vae, args.vae_scenes)
    log.info("VAE %s on %d scenes", vae, args.vae_scenes)
    summary, judgements, images = generation_eval(pipe, args.prompts)
    log.info("generation %s", summary)
    probe = position_probe(pipe)
    log.info("position probe %s", probe)
    prompts = [j.prompt for j in judgements]
    result = {
        "vae_readback": vae["readback"],
        "vae_stray_pixels": vae["stray_pixels"],
        "vae_images_with_artefacts": vae["images_with_artefacts"],
        "vae_scenes": args.vae_scenes,
        "generation": summary,
        "position_probe": probe,
        "settings": {"steps": 50, "guidance": 7.5, "scheduler": "DDIM", "seed": 2024},
        "seconds": time.perf_counter() - started,
        "failures": [j.prompt for j in judgements if not j.ok][:40],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    args.samples_dir.mkdir(parents=True, exist_ok=True)
    half = len(images) // 2
    pick = list(range(min(12, half))) + list(range(half, min(half + 12, len(images))))
    sample_grid(
        [images[i] for i in pick],
        [prompts[i] for i in pick],
        args.samples_dir / "shapes-samples.png",
    )
    lines = [
        f"{k}: {prompts[i]} -> {'ok' if judgements[i].ok else 'wrong'}" for k, i in enumerate(pick)
    ]
    (args.samples_dir / "shapes-samples.txt").write_text("\n".join(lines) + "\n")
    if args.work is not None:
        from shapes_lab.curves import plot_curves

        plot_curves(args.work, args.samples_dir / "shapes-training.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
