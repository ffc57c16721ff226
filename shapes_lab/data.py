"""Seeded batches of freshly rendered scenes (images as tensors, training captions)."""

from __future__ import annotations

import numpy as np
import torch

from lusd.shapes.world import render, sample_scene, training_caption


def batch_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    """The generator of one training step: the data stream is a pure function of the step."""
    return np.random.default_rng([seed, sum(map(ord, stage)), step])


def to_tensor(images: list) -> torch.Tensor:
    """PIL images (or uint8 arrays) -> float tensor (B, 3, H, W) in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def from_tensor(x: torch.Tensor) -> list[np.ndarray]:
    """Float tensor (B, 3, H, W) in [-1, 1] -> list of uint8 arrays (H, W, 3)."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return list(arr.permute(0, 2, 3, 1).cpu().numpy())


def image_batch(rng: np.random.Generator, n: int, n_objects: int | None = None) -> torch.Tensor:
    """``n`` rendered scenes (``n_objects`` each, default 1-3) as a [-1, 1] tensor."""
    return to_tensor([render(sample_scene(rng, n_objects)) for _ in range(n)])


def captioned_batch(
    rng: np.random.Generator, n: int, p_uncond: float = 0.1
) -> tuple[torch.Tensor, list[str]]:
    """Images and their captions; a fraction ``p_uncond`` of captions is empty (for CFG)."""
    scenes = [sample_scene(rng) for _ in range(n)]
    caps = [training_caption(s, rng) if rng.random() >= p_uncond else "" for s in scenes]
    return to_tensor([render(s) for s in scenes]), caps
