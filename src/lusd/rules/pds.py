"""PDS, Posterior Distillation Sampling (Koo et al., CVPR 2024): match the stochastic latents
z = (x_{t-1} - mu(x_t)) / sigma_t of the target and the source, both formed with the same
noises, and move the latent with AdamW along z_tgt - z_src.

The authors follow the optimisation with an SDEdit refinement (a short DDIM sampling from a
partly noised result); it is left out here: the rule is the score-distillation part only.
"""

from __future__ import annotations

import math

import torch
from diffusers.utils.torch_utils import randn_tensor

from lusd.distill import Distiller, guided
from lusd.errors import ConfigError
from lusd.rules.base import Setting, UpdateRule
from lusd.rules.dds import BASELINE, regional

#: the schedulers' ``steps_offset`` of SD 1.x, 2.x and XL: grid step k is t = k * ratio + 1
STEPS_OFFSET = 1
#: torch.optim.AdamW's defaults, which the authors use
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

# ---- the posterior -----------------------------------------------------------------------------


def posterior_coefficients(
    alphas_cumprod: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c0, c1, sigma_t), one each per entry of ``t``, with the authors' indexing:
    beta_t = 1 - abar_t / abar_{t-1} and alpha_t = 1 - beta_t of ONE training step at t
    (the scheduler's ``betas[t]``, ``alphas[t]``), abar_prev = abar at ``t_prev`` (one grid
    step back):
    c0 = sqrt(abar_prev) beta_t / (1 - abar_t), c1 = sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t),
    sigma_t = sqrt((1 - abar_prev) / (1 - abar_t) beta_t)."""
    abar = alphas_cumprod.double()
    abar_t, abar_prev = abar[t], abar[t_prev]
    before = torch.where(t > 0, abar[(t - 1).clamp_min(0)], torch.ones_like(abar_t))
    alpha_t = abar_t / before
    beta_t = 1 - alpha_t
    c0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
    c1 = alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)
    sigma = ((1 - abar_prev) / (1 - abar_t) * beta_t).sqrt()
    return c0.float(), c1.float(), sigma.float()


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0^ = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def pds_noise(
    x_prev: torch.Tensor,
    x_t: torch.Tensor,
    eps: torch.Tensor,
    abar_t: torch.Tensor,
    c0: torch.Tensor,
    c1: torch.Tensor,
    sigma: torch.Tensor,
) -> torch.Tensor:
    """z = (x_{t-1} - mu) / sigma_t with the posterior mean mu = c0 x0^ + c1 x_t."""
    mean = c0 * predicted_x0(x_t, eps, abar_t) + c1 * x_t
    return (x_prev - mean) / sigma


def pds_gradient(z_target: torch.Tensor, z_source: torch.Tensor) -> torch.Tensor:
    """PDS: z_tgt - z_src, NaN and infinities cleaned as the authors do."""
    return torch.nan_to_num(z_target - z_source)


def grid_steps(num_train: int, grid: int, t_min: int, t_max: int) -> tuple[int, int, int]:
    """(ratio, low, high): grid step k is t = k * ratio + STEPS_OFFSET (DDIM's "leading"
    grid of ``grid`` steps); k in [low, high) keeps t in [t_min, t_max) and k >= 1 (k - 1 is
    the step before). The authors' indices [10, 490) of 500 steps are t in [21, 980)."""
    ratio = num_train // grid
    if ratio < 1:
        raise ConfigError(
            f"pds_grid must be at most the model's {num_train} training timesteps, got {grid}"
        )
    low = max(1, math.ceil((t_min - STEPS_OFFSET) / ratio))
    high = min(grid, math.ceil((t_max - STEPS_OFFSET) / ratio))
    if low >= high:
        raise ConfigError(
            f"t range [{t_min}, {t_max}) holds no step of PDS's {grid}-step grid "
            f"(t = k * {ratio} + {STEPS_OFFSET}, k >= 1); widen it or change pds_grid"
        )
    return ratio, low, high


# ---- the optimiser -----------------------------------------------------------------------------


def adamw_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    count: int,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = ADAM_BETAS,
    eps: float = ADAM_EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of torch.optim.AdamW (``count`` = this step's number, from 1): returns
    (param, first moment, second moment). p <- p (1 - lr wd); m <- b1 m + (1 - b1) g;
    v <- b2 v + (1 - b2) g^2; p <- p - lr / (1 - b1^n) * m / (sqrt(v / (1 - b2^n)) + eps).
    Elementwise: one state over stacked lanes equals one per lane."""
    beta1, beta2 = betas
    param = param * (1 - lr * weight_decay)
    first = first + (1 - beta1) * (grad - first)
    second = second * beta2 + (1 - beta2) * grad * grad
    denom = second.sqrt() / math.sqrt(1 - beta2**count) + eps
    return param - lr / (1 - beta1**count) * first / denom, first, second


# ---- the rule -----------------------------------------------------------------------------------


class PDS(UpdateRule):
    """Per iteration: one pass of four branches per lane (target and source, each with the
    empty prompt for guidance), no backward; AdamW on the latent.

    Follows the authors' ``pds/pds.py``: the timestep is a step of a 500-step DDIM grid with
    t_prev one grid step earlier; x_t (one noise) and x_{t_prev} (a second noise) are formed
    from each branch's own latent with the same two noises; the AdamW gradient is their
    loss's, 0.5 * mean((z - (z - g))^2), i.e. g / (C h w). The t range of the config picks
    the grid steps (the preset's [21, 980) are the authors' indices [10, 490)). Guidance 50,
    AdamW lr 0.1 with torch's defaults, 500 steps: the image-editing setting. With a region,
    the gradient and the whole AdamW step (weight decay included) are kept to it."""

    name = "pds"
    summary = "PDS (Koo et al. 2024): match the source's and target's posterior noises"
    settings = (
        Setting("pds_grid", 500, 2, 100_000, "steps of the DDIM grid the timesteps are drawn on"),
        Setting("pds_weight_decay", 0.01, 0.0, 1.0, "AdamW's weight decay (torch's default)"),
    )
    presets = {
        "pds": dict(
            guidance_scale=50.0,
            **{**BASELINE, "num_steps": 500, "lr": 0.1, "t_min": 21, "t_max": 980},
        )
    }
    needs_empty = True
    rows_per_lane = 4

    def start(self, loop: Distiller) -> None:
        cfg = self.config
        self.grid = grid_steps(
            len(loop.alphas_cumprod), self.option("pds_grid"), cfg.t_min, cfg.t_max
        )
        self.moments: tuple[torch.Tensor, torch.Tensor] | None = None
        self.count = 0

    def _sample(self, loop: Distiller):
        """Per lane from its generator: grid step, noise for x_t, noise for x_{t_prev}."""
        ratio, low, high = self.grid
        steps, noises, noises_prev = [], [], []
        for lane in loop.lanes:
            like = lane.source
            steps.append(torch.randint(low, high, (1,), generator=lane.generator))
            for out in (noises, noises_prev):
                out.append(
                    randn_tensor(like.shape, generator=lane.generator, device=like.device,
                                 dtype=like.dtype)
                )  # fmt: skip
        k = torch.cat(steps)
        return (
            k * ratio + STEPS_OFFSET,
            (k - 1) * ratio + STEPS_OFFSET,
            torch.cat(noises),
            torch.cat(noises_prev),
        )

    def step(self, loop: Distiller, step: int, latents: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        lanes = range(len(loop.lanes))
        t, t_prev, noise, noise_prev = self._sample(loop)
        source = torch.cat([lane.source for lane in loop.lanes])
        x_t = {"tgt": loop.noised(latents, t, noise), "src": loop.noised(source, t, noise)}
        x_prev = {"tgt": loop.noised(latents, t_prev, noise_prev),
                  "src": loop.noised(source, t_prev, noise_prev)}  # fmt: skip
        loop.capture([], [])
        e_tgt_empty, e_tgt, e_src_empty, e_src = loop.eps(
            [x_t["tgt"], x_t["tgt"], x_t["src"], x_t["src"]],
            t,
            ["empty", "target", "empty", "source"],
            lanes,
        )
        w = cfg.guidance_scale
        eps = {"tgt": guided(e_tgt_empty, e_tgt, w), "src": guided(e_src_empty, e_src, w)}
        device = latents.device
        c0, c1, sigma = (
            c.to(device).view(-1, 1, 1, 1)
            for c in posterior_coefficients(loop.alphas_cumprod, t, t_prev)
        )
        abar_t = loop.alphas_cumprod[t].to(device).view(-1, 1, 1, 1)
        z = {b: pds_noise(x_prev[b], x_t[b], eps[b], abar_t, c0, c1, sigma) for b in eps}
        gradient = regional(pds_gradient(z["tgt"], z["src"]), loop) / latents[0].numel()
        if self.moments is None:
            self.moments = (torch.zeros_like(latents), torch.zeros_like(latents))
        self.count += 1
        moved, *moments = adamw_step(
            latents, gradient, *self.moments, self.count, cfg.lr, self.option("pds_weight_decay")
        )
        self.moments = (moments[0], moments[1])
        return latents + regional(moved - latents, loop)
