"""Book-keeping of one training stage: its budget, learning-rate schedule, loss log,
periodic checkpoints and resume (used by the VAE and UNet stages of ``shapes_lab.train``)."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class StageSpec:
    name: str
    minutes: float
    max_steps: int
    batch: int
    lr: float
    warmup: int = 100
    final_lr_frac: float = 0.05


def lr_at(spec: StageSpec, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay over the run's progress (steps or time)."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * (spec.final_lr_frac + (1 - spec.final_lr_frac) * cos)


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Run:
    """Book-keeping of one stage: progress, loss log, periodic checkpoints, resume."""

    def __init__(
        self, work: Path, spec: StageSpec, ckpt_minutes: float, keep: bool = False
    ) -> None:
        self.dir = work / spec.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.ckpt_path = self.dir / "ckpt.pt"
        self.ckpt_every = ckpt_minutes * 60
        self.keep = keep
        self.step = 0
        self.elapsed = 0.0
        self._t0 = time.monotonic()
        self._last_ckpt = time.monotonic()
        self._log = self.dir / "loss.csv"

    @property
    def done_path(self) -> Path:
        return self.dir / "DONE"

    @property
    def kept_dir(self) -> Path:
        return self.dir / "kept"

    def resume(self) -> dict[str, Any] | None:
        if not self.ckpt_path.exists():
            return None
        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        self.step, self.elapsed = state["step"], state["elapsed"]
        log.info("%s: resumed at step %d (%.1f min)", self.spec.name, self.step, self.elapsed / 60)
        return state

    def now(self) -> float:
        return self.elapsed + time.monotonic() - self._t0

    def progress(self) -> float:
        return max(self.step / self.spec.max_steps, self.now() / (self.spec.minutes * 60))

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def set_lr(self, opt: torch.optim.Optimizer) -> None:
        """The learning rate of the current step (:func:`lr_at`) into every parameter group."""
        for group in opt.param_groups:
            group["lr"] = lr_at(self.spec, self.step, self.progress())

    def progress_bar(self, hidden: bool) -> tqdm:
        """Steps from the resumed one on (the total is a time budget, so unknown)."""
        return tqdm(
            initial=self.step,
            total=None,
            desc=self.spec.name,
            disable=hidden,
            mininterval=10,
            unit="step",
        )

    def record(self, values: dict[str, float]) -> None:
        new = not self._log.exists()
        with self._log.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["step", "seconds", *values])
            w.writerow([self.step, f"{self.now():.1f}", *(f"{v:.6g}" for v in values.values())])

    def maybe_checkpoint(self, make_state, force: bool = False) -> None:
        if force or time.monotonic() - self._last_ckpt >= self.ckpt_every:
            state = make_state()
            state.update(step=self.step, elapsed=self.now())
            save_atomic(state, self.ckpt_path)
            if self.keep:
                # A hard link: the next save replaces ckpt.pt, and this name keeps the old file.
                self.kept_dir.mkdir(exist_ok=True)
                kept = self.kept_dir / f"ckpt_{self.step:06d}.pt"
                kept.unlink(missing_ok=True)
                os.link(self.ckpt_path, kept)
            self._last_ckpt = time.monotonic()

    def finish(self, make_state, bar: tqdm) -> None:
        """Save the last checkpoint and mark the stage done (a rerun skips it)."""
        self.maybe_checkpoint(make_state, force=True)
        bar.close()
        self.done_path.write_text(f"{self.step}\n")
        log.info("%s: done after %d steps, %.1f min", self.spec.name, self.step, self.now() / 60)
