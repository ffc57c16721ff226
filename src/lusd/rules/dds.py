"""DDS, Delta Denoising Score (Hertz et al. 2023): the guided target prediction minus the
guided source prediction on the source latent, same timestep and noise."""

from __future__ import annotations

import torch

from lusd.config import LUSD_LR
from lusd.distill import Distiller, guided
from lusd.rules.base import UpdateRule

#: what the baselines share: their authors' SGD without LUSD's mask, filter or normalisation
BASELINE = dict(
    num_steps=200,
    lr=0.1 * LUSD_LR,
    use_filter=False,
    use_mask=False,
    normalize=False,
    lambda_reg=0.0,
)


def dds_gradient(eps_guided_target: torch.Tensor, eps_guided_source: torch.Tensor) -> torch.Tensor:
    """DDS (Hertz et al. 2023): eps^w(z_t, target) - eps^w(zsrc_t, source)."""
    return eps_guided_target - eps_guided_source


def regional(gradient: torch.Tensor, loop: Distiller) -> torch.Tensor:
    """The gradient with every lane's region applied (lanes without one unchanged)."""
    if all(lane.region is None for lane in loop.lanes):
        return gradient
    return torch.cat(
        [g if lane.region is None else lane.region * g
         for g, lane in zip(gradient.split(1), loop.lanes, strict=True)]
    )  # fmt: skip


def dds_sample(
    loop: Distiller, latents: torch.Tensor, guidance: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDS sample for every lane: (t, noise, gradient), from one pass whose rows are
    the noised sources under the empty and the source prompt, then the noised latents under
    the empty and the target prompt (so the source-prompt rows are ``lanes .. 2 lanes``)."""
    lanes = range(len(loop.lanes))
    t, noise = loop.sample(lanes)
    noisy = loop.noised(latents, t, noise)
    source = torch.cat([lane.source for lane in loop.lanes])
    noisy_source = loop.noised(source, t, noise)
    loop.capture([], [])
    e_src_empty, e_src, e_tgt_empty, e_tgt = loop.eps(
        [noisy_source, noisy_source, noisy, noisy],
        t,
        ["empty", "source", "empty", "target"],
        lanes,
    )
    gradient = dds_gradient(
        guided(e_tgt_empty, e_tgt, guidance), guided(e_src_empty, e_src, guidance)
    )
    return t, noise, gradient


class DDS(UpdateRule):
    name = "dds"
    summary = "DDS (Hertz et al. 2023): guided target minus guided source prediction"
    needs_empty = True
    rows_per_lane = 4
    presets = {"dds": dict(guidance_scale=7.5, **BASELINE)}

    def step(self, loop: Distiller, step: int, latents: torch.Tensor) -> torch.Tensor:
        _, _, gradient = dds_sample(loop, latents, self.config.guidance_scale)
        return latents - self.config.lr * regional(gradient, loop)
