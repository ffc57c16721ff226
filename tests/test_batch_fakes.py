"""Fake editors and manifest builders for the batch tests (no model; importable by Ray workers).

Run as a script it executes a batch with the fake editor (used by the kill test):
``python test_batch_fakes.py MANIFEST OUTDIR [DELAY]``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class FakeEditor:
    """Paints a seed-coloured square in the middle; the mask is that square."""

    delay: float = 0.0

    def __call__(self, image: Image.Image, job) -> object:
        from lusd.batch.execute import EditResult
        from lusd.errors import PromptError

        if "FAIL" in job.target_prompt:
            raise PromptError(f"fake failure for {job.target_prompt!r}")
        if self.delay:
            time.sleep(self.delay)
        w, h = image.size
        box = (w // 4, h // 4, 3 * w // 4 - 1, 3 * h // 4 - 1)
        rng = np.random.default_rng(job.seed)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        out = image.copy()
        ImageDraw.Draw(out).rectangle(box, fill=colour)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rectangle(box, fill=255)
        stats = {
            "unet_calls": job.config.num_steps,
            "iterations": job.config.num_steps,
            "filter_retries": 0,
            "config_hash": job.config.digest(),
        }
        return EditResult(out, mask, stats)


@dataclass
class FakeFactory:
    """Builds a FakeEditor; with ``log_dir`` each construction leaves a file (pid-named)."""

    delay: float = 0.0
    log_dir: str | None = None

    def __call__(self) -> FakeEditor:
        if self.log_dir:
            import os

            with open(Path(self.log_dir) / f"editor-{os.getpid()}.log", "a") as fh:
                fh.write("built\n")
        return FakeEditor(self.delay)


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
