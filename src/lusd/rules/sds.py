"""SDS, Score Distillation Sampling (DreamFusion, Poole et al. 2022): the guided target
prediction minus the noise; the source prompt is not read."""

from __future__ import annotations

import torch

from lusd.distill import Distiller, guided
from lusd.rules.base import UpdateRule
from lusd.rules.dds import BASELINE, regional


def sds_gradient(eps_guided: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """SDS (DreamFusion): eps^w(z_t, target) - eps."""
    return eps_guided - noise


class SDS(UpdateRule):
    name = "sds"
    summary = "SDS (Poole et al. 2022): guided target prediction minus the noise"
    needs_empty = True
    compares_prompts = False
    presets = {"sds": dict(guidance_scale=100.0, **BASELINE)}

    def step(self, loop: Distiller, step: int, latents: torch.Tensor) -> torch.Tensor:
        lanes = range(len(loop.lanes))
        t, noise = loop.sample(lanes)
        noisy = loop.noised(latents, t, noise)
        loop.capture([], [])
        eps_empty, eps_target = loop.eps([noisy, noisy], t, ["empty", "target"], lanes)
        gradient = sds_gradient(guided(eps_empty, eps_target, self.config.guidance_scale), noise)
        return latents - self.config.lr * regional(gradient, loop)
