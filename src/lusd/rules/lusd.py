"""LUSD (Localized Update Score Distillation): the attention mask, the gradient filter and
the normalised update of LUSD_SPEC, and the paper's ablations as presets."""

from __future__ import annotations

import math

import torch

from lusd.config import LUSD_LR
from lusd.distill import Distiller
from lusd.rules.base import UpdateRule

# ---- schedules ---------------------------------------------------------------------------------


def scale_schedule(step: int, num_steps: int, high: float, low: float, k: float) -> float:
    """s_i = low + (high - low) * (1 - sigmoid(k * (2i/(N-1) - 1))): from ~high down to ~low."""
    progress = 2 * step / max(num_steps - 1, 1) - 1
    return low + (high - low) * (1 - 1 / (1 + math.exp(-k * progress)))


def narrowing_weight(step: int, num_steps: int) -> float:
    """beta_i, linear from 0 (first step) to 1 (last step)."""
    return step / max(num_steps - 1, 1)


# ---- mask algebra --------------------------------------------------------------------------------


def ema_update(average: torch.Tensor | None, new: torch.Tensor, rate: float) -> torch.Tensor:
    """M <- (1 - rate) M + rate m; the first map initialises M."""
    return new.clone() if average is None else (1 - rate) * average + rate * new


def progressive_mask(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """M_i = beta M + (1 - beta): global update at first, local at the end."""
    return beta * mask + (1 - beta)


def within_region(attention: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """An attention map (h, w) min-max normalised over the region (1, 1, h, w) as if the
    region were the whole picture; 0 outside it."""
    inside = region[0, 0] > 0
    values = attention[inside]
    low, high = values.min(), values.max()
    scaled = (attention - low) / (high - low).clamp_min(1e-8)
    return torch.where(inside, scaled.clamp(0, 1), torch.zeros_like(attention))


# ---- the direction -------------------------------------------------------------------------------


def lusd_direction(
    delta: torch.Tensor,
    latents: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor | None,
    lambda_reg: float,
) -> torch.Tensor:
    """g = (1 - lambda) M_i d + lambda (z - z_src)."""
    masked = delta if mask is None else mask * delta
    return (1 - lambda_reg) * masked + lambda_reg * (latents - source)


def normalize(
    direction: torch.Tensor, scale: float, region: torch.Tensor | None = None
) -> torch.Tensor:
    """g / std(g) * s_i; the std over the region only when one is given."""
    return direction / _spread(direction, region).clamp_min(1e-12) * scale


def passes_filter(
    delta: torch.Tensor, threshold: float, region: torch.Tensor | None = None
) -> bool:
    """Gradient filtering: accept the sample when std(d) >= tau, or when d is all zero
    (the prompts predict the same noise: no other sample would differ, as the authors'
    code accepts it too). With a region, std(d) is taken over the region only."""
    spread = _spread(delta, region)
    return bool(spread >= threshold or spread == 0)


def _spread(values: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    if region is None:
        return values.std()
    return values[(region > 0).expand_as(values)].std()


# ---- the rule ------------------------------------------------------------------------------


class LUSD(UpdateRule):
    """Every lane samples until its difference d = eps(target) - eps(source) passes the
    filter (its own threshold and retry budget; only rejected lanes run again), then moves
    along its normalised, masked direction."""

    name = "lusd"
    summary = "LUSD: attention mask, gradient filter, normalised update (the paper)"
    reads_attention = True
    presets = {
        "lusd": {},
        "lusd-no-mask": dict(use_mask=False),
        "lusd-no-filter": dict(use_filter=False),
        "lusd-no-norm": dict(normalize=False, lr=0.1 * LUSD_LR),
    }

    def start(self, loop: Distiller) -> None:
        self.averages: list[torch.Tensor | None] = [None] * len(loop.lanes)

    def mask(self, lane: int) -> torch.Tensor | None:
        return self.averages[lane]

    def step(self, loop: Distiller, step: int, latents: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        count = len(loop.lanes)
        deltas: list[torch.Tensor] = [latents[:0]] * count
        maps: list[torch.Tensor | None] = [None] * count
        threshold = [cfg.tau0] * count
        retries = [0] * count
        budget = [round(cfg.retry_budget * cfg.num_steps) - s.filter_retries for s in loop.stats]
        pending = list(range(count))
        while pending:
            t, noise = loop.sample(pending)
            noisy = loop.noised(latents[pending], t, noise)
            reading = [i for i in pending if loop.lanes[i].use_mask]
            rows = [len(pending) + pending.index(i) for i in reading]
            loop.capture(rows, reading)
            eps_source, eps_target = loop.eps([noisy, noisy], t, ["source", "target"], pending)
            read = dict(zip(reading, loop.read_masks() or [], strict=False))
            rejected = []
            for j, i in enumerate(pending):
                delta = eps_target[j : j + 1] - eps_source[j : j + 1]
                deltas[i], maps[i] = delta, read.get(i)
                if (
                    cfg.use_filter
                    and retries[i] < min(cfg.max_filter_retries, budget[i])
                    and not passes_filter(delta, threshold[i], loop.region(i))
                ):
                    retries[i] += 1
                    threshold[i] *= cfg.tau_decay
                    rejected.append(i)
            pending = rejected
        updated = []
        for i in range(count):
            loop.stats[i].filter_retries += retries[i]
            updated.append(self._move(i, step, latents[i : i + 1], loop, deltas[i], maps[i]))
        return torch.cat(updated)

    def _move(self, i, step, latents, loop, delta, new_map) -> torch.Tensor:
        cfg = self.config
        region = loop.region(i)
        source = loop.lanes[i].source
        mask = None
        if loop.lanes[i].use_mask:
            if new_map is not None and region is not None:
                new_map = within_region(new_map.to(latents.device), region)
            if new_map is not None:
                self.averages[i] = ema_update(
                    self.averages[i], new_map.to(latents.device), cfg.mask_ema
                )
            if step > 0 and self.averages[i] is not None:
                beta = narrowing_weight(step, cfg.num_steps) if cfg.progressive_mask else 1.0
                mask = progressive_mask(self.averages[i], beta)
        direction = lusd_direction(delta, latents, source, mask, cfg.lambda_reg)
        if region is not None:
            direction = region * direction
        if cfg.normalize:
            scale = scale_schedule(step, cfg.num_steps, cfg.scale_high, cfg.scale_low, cfg.scale_k)
            direction = normalize(direction, scale, region)
        return latents - cfg.lr * direction
