"""Fake pipelines and manifest builders for the batch tests (no model; importable by Ray workers).

Run as a script it executes a batch with the fake editor (used by the kill test):
``python tests/support/batch_fakes.py MANIFEST OUTDIR [DELAY]``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lusd.model_id import ModelIdentity


@dataclass
class FakeEditor:
    """A pipeline (LUSDPipeline's call contract) that paints a square in the middle, coloured
    by the edit's generator, so by its seed; the mask is that square. Outputs name it "fake".

    A list of generators makes one candidate each; ``judge`` (``EditInputs.judge`` in
    ``edit_batch``) scores each candidate
    :func:`fake_score` of its colour. ``edit_batch`` runs several edits at once (each gives
    what it gives alone) and raises for the whole call when one of them fails, as the real
    pipeline does; ``batches`` records the size of every call (``__call__``: 1), and so does
    the file ``batch_log`` when given (one line per call, for Ray workers).
    """

    delay: float = 0.0
    identity: ModelIdentity = ModelIdentity("fake")
    batches: list[int] = field(default_factory=list)
    batch_log: str | None = None

    def _log(self, size: int) -> None:
        self.batches.append(size)
        if self.batch_log:
            with open(self.batch_log, "a") as fh:
                fh.write(f"{size}\n")

    def __call__(
        self, image, source_prompt, target_prompt, *, config, generator, judge=False, **_
    ) -> object:
        from lusd.edit_batch import EditInputs

        generators = generator if isinstance(generator, list) else [generator]
        edit = EditInputs(image, source_prompt, target_prompt, generators=generators, judge=judge)
        self._log(1)
        return self._edit(edit, config)

    def edit_batch(self, edits, config, progress=None, should_stop=None) -> list:
        from lusd.errors import PromptError

        for edit in edits:  # inputs are checked for the whole call first, as the pipeline does
            if "FAIL" in edit.target_prompt:
                raise PromptError(f"fake failure for {edit.target_prompt!r}")
        self._log(len(edits))
        return [self._edit(edit, config) for edit in edits]

    def _edit(self, edit, config) -> object:
        from types import SimpleNamespace

        import torch

        from lusd.errors import PromptError

        if "FAIL" in edit.target_prompt:
            raise PromptError(f"fake failure for {edit.target_prompt!r}")
        if self.delay:
            time.sleep(self.delay)
        image = edit.image
        w, h = image.size
        box = (w // 4, h // 4, 3 * w // 4 - 1, 3 * h // 4 - 1)
        images, masks, scores = [], [], []
        for generator in edit.generators:
            colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=generator))
            out = image.copy()
            ImageDraw.Draw(out).rectangle(box, fill=colour)
            mask = Image.new("L", image.size, 0)
            ImageDraw.Draw(mask).rectangle(box, fill=255)
            images.append(out)
            masks.append(mask)
            scores.append(fake_score(colour))
        stats = {
            "unet_calls": config.num_steps,
            "iterations": config.num_steps,
            "filter_retries": 0,
            "config_hash": config.digest(),
        }
        if len(images) > 1:  # each candidate's own stats, as the pipeline gives them
            stats["candidates"] = [
                {"unet_calls": config.num_steps, "iterations": config.num_steps} for _ in images
            ]
        return SimpleNamespace(
            images=images,
            masks=masks,
            focus_words=[],
            stats=stats,
            scores=scores if edit.judge else None,
        )


def fake_score(colour: tuple[int, int, int]) -> float:
    """The fake judge's score of a candidate painted ``colour``: its red share, in [0, 1]."""
    return round(colour[0] / 255, 4)


@dataclass
class FakeFactory:
    """Builds a FakeEditor; with ``log_dir`` each construction leaves a file (pid-named),
    and the editor logs the size of each of its calls beside it (``calls-<pid>.txt``)."""

    delay: float = 0.0
    log_dir: str | None = None

    def __call__(self) -> FakeEditor:
        if not self.log_dir:
            return FakeEditor(self.delay)
        import os

        with open(Path(self.log_dir) / f"editor-{os.getpid()}.log", "a") as fh:
            fh.write("built\n")
        return FakeEditor(
            self.delay, batch_log=str(Path(self.log_dir) / f"calls-{os.getpid()}.txt")
        )


def write_images(folder: Path, n: int, size: int = 32) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.full((size, size, 3), 240, np.uint8)
        arr[2 : 6 + i % 5, 2:8] = (220, 40, 40)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def write_manifest(folder: Path, n: int, *, extra: dict | None = None, fmt: str = "jsonl") -> Path:
    """``n`` rows with images in folder/images, relative paths, seed = row index."""
    write_images(folder / "images", n)
    rows = [
        {
            "image": f"images/img{i:03d}.png",
            "source_prompt": "a red square",
            "target_prompt": f"a red square and a blue circle {i}",
            "seed": i,
            **(extra or {}),
        }
        for i in range(n)
    ]
    if fmt == "jsonl":
        path = folder / "manifest.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import csv

        path = folder / "manifest.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _main(argv: list[str]) -> None:
    from lusd.batch import BatchOptions, run_batch

    manifest, outdir = Path(argv[0]), Path(argv[1])
    delay = float(argv[2]) if len(argv) > 2 else 0.05
    summary = run_batch(
        BatchOptions(manifest, outdir, model="fake", oracle=False), FakeFactory(delay)
    )
    print(json.dumps({"done": summary.done, "failed": summary.failed}))


if __name__ == "__main__":
    _main(sys.argv[1:])
