"""The score-distillation loop and its update rules (SDS, DDS, LUSD) as plain tensor functions."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from lusd.config import EditConfig
from lusd.errors import ConfigError

#: predict_eps(latents, timestep, embeddings) -> eps, for a batch; no autograd. The
#: embeddings are a tensor (SD) or an object with a ``cat`` that stacks a batch (SDXL's
#: ``lusd.families.XLConditioning``).
EpsPredictor = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def concat_embeddings(items: list[Any]) -> Any:
    """Stack prompt embeddings along the batch: ``torch.cat``, or the items' own ``cat``."""
    first = items[0]
    return torch.cat(items) if isinstance(first, torch.Tensor) else type(first).cat(items)


# ---- schedules -----------------------------------------------------------------------------


def scale_schedule(step: int, num_steps: int, high: float, low: float, k: float) -> float:
    """s_i = low + (high - low) * (1 - sigmoid(k * (2i/(N-1) - 1))): from ~high down to ~low."""
    progress = 2 * step / max(num_steps - 1, 1) - 1
    return low + (high - low) * (1 - 1 / (1 + math.exp(-k * progress)))


def narrowing_weight(step: int, num_steps: int) -> float:
    """beta_i, linear from 0 (first step) to 1 (last step)."""
    return step / max(num_steps - 1, 1)


# ---- mask algebra ------------------------------------------------------------------------------


def ema_update(average: torch.Tensor | None, new: torch.Tensor, rate: float) -> torch.Tensor:
    """M <- (1 - rate) M + rate m; the first map initialises M."""
    return new.clone() if average is None else (1 - rate) * average + rate * new


def progressive_mask(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """M_i = beta M + (1 - beta): global update at first, local at the end."""
    return beta * mask + (1 - beta)


# ---- update rules --------------------------------------------------------------------------------


def guided(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance eps(x, empty) + w (eps(x, y) - eps(x, empty))."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def sds_gradient(eps_guided: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """SDS (DreamFusion): eps^w(z_t, target) - eps."""
    return eps_guided - noise


def dds_gradient(eps_guided_target: torch.Tensor, eps_guided_source: torch.Tensor) -> torch.Tensor:
    """DDS (Hertz et al. 2023): eps^w(z_t, target) - eps^w(zsrc_t, source)."""
    return eps_guided_target - eps_guided_source


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


def within_region(attention: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """An attention map (h, w) min-max normalised over the region (1, 1, h, w) as if the
    region were the whole picture; 0 outside it."""
    inside = region[0, 0] > 0
    values = attention[inside]
    low, high = values.min(), values.max()
    scaled = (attention - low) / (high - low).clamp_min(1e-8)
    return torch.where(inside, scaled.clamp(0, 1), torch.zeros_like(attention))


def _spread(values: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    if region is None:
        return values.std()
    return values[(region > 0).expand_as(values)].std()


# ---- the loop ------------------------------------------------------------------------------------


@dataclass
class DistillStats:
    iterations: int = 0
    unet_calls: int = 0
    filter_retries: int = 0
    seconds: float = 0.0


@dataclass
class DistillResult:
    latents: torch.Tensor
    mask: torch.Tensor | None
    stats: DistillStats = field(default_factory=DistillStats)


@dataclass
class Conditioning:
    """Text embeddings of the prompts (each of shape (1, tokens, dim), or the model family's
    conditioning object); ``empty`` (the unconditional prompt) is needed by the guided
    methods (DDS, SDS) only."""

    source: Any
    target: Any
    empty: Any = None


class Distiller:
    """Runs one edit: ``config.num_steps`` accepted iterations over a latent.

    ``read_mask()`` returns the normalised attention map of the last UNet pass
    (or None); ``capture(active)`` tells the attention store whether to record.
    """

    def __init__(
        self,
        predict_eps: EpsPredictor,
        alphas_cumprod: torch.Tensor,
        config: EditConfig,
        generator: torch.Generator | None = None,
        capture: Callable[[bool], None] = lambda active: None,
        read_mask: Callable[[], torch.Tensor | None] = lambda: None,
    ):
        if config.t_max > len(alphas_cumprod):
            raise ConfigError(
                f"t_max must be at most {len(alphas_cumprod)} (the model's training timesteps), "
                f"got {config.t_max}"
            )
        self.predict_eps = predict_eps
        self.alphas_cumprod = alphas_cumprod.to(torch.float32)
        self.config = config
        self.generator = generator
        self.capture = capture
        self.read_mask = read_mask

    def _sample(self, like: torch.Tensor) -> tuple[int, torch.Tensor]:
        t = int(torch.randint(self.config.t_min, self.config.t_max, (1,), generator=self.generator))
        noise = randn_tensor(
            like.shape, generator=self.generator, device=like.device, dtype=like.dtype
        )
        return t, noise

    def _noised(self, latents: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod[t].to(latents.device)
        return abar.sqrt() * latents + (1 - abar).sqrt() * noise

    def _eps(self, inputs: list[torch.Tensor], t: int, embeddings: list[Any]) -> list[torch.Tensor]:
        batch = torch.cat(inputs)
        timestep = torch.full((batch.shape[0],), t, device=batch.device, dtype=torch.long)
        return list(
            self.predict_eps(batch, timestep, concat_embeddings(embeddings))
            .float()
            .chunk(len(inputs))
        )

    def run(
        self,
        source_latents: torch.Tensor,
        cond: Conditioning,
        use_mask: bool,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        region: torch.Tensor | None = None,
    ) -> DistillResult:
        """``region`` (1, 1, h, w) in [0, 1] at latent size restricts every update to it."""
        cfg = self.config
        if region is not None:
            region = region.to(source_latents.device, torch.float32)
        stats = DistillStats()
        start = time.perf_counter()
        source = source_latents.float()
        latents = source.clone()
        average: torch.Tensor | None = None
        for step in range(cfg.num_steps):
            if should_stop():
                break
            if cfg.method == "lusd":
                latents, average = self._lusd_step(
                    step, latents, source, cond, use_mask, average, stats, region
                )
            else:
                latents = self._baseline_step(latents, source, cond, stats, region)
            stats.iterations += 1
            if on_step is not None:
                on_step(step + 1, cfg.num_steps)
        stats.seconds = time.perf_counter() - start
        return DistillResult(latents, average, stats)

    def _lusd_step(self, step, latents, source, cond, use_mask, average, stats, region):
        cfg = self.config
        threshold = cfg.tau0
        retries = 0
        budget_left = round(cfg.retry_budget * cfg.num_steps) - stats.filter_retries
        while True:
            t, noise = self._sample(latents)
            noisy = self._noised(latents, t, noise)
            self.capture(use_mask)
            eps_source, eps_target = self._eps([noisy, noisy], t, [cond.source, cond.target])
            stats.unet_calls += 1
            delta = eps_target - eps_source
            if (
                not cfg.use_filter
                or retries >= min(cfg.max_filter_retries, budget_left)
                or passes_filter(delta, threshold, region)
            ):
                break
            retries += 1
            threshold *= cfg.tau_decay
        stats.filter_retries += retries
        mask = None
        if use_mask:
            new_map = self.read_mask()
            if new_map is not None and region is not None:
                new_map = within_region(new_map.to(latents.device), region)
            if new_map is not None:
                average = ema_update(average, new_map.to(latents.device), cfg.mask_ema)
            if step > 0 and average is not None:
                beta = narrowing_weight(step, cfg.num_steps) if cfg.progressive_mask else 1.0
                mask = progressive_mask(average, beta)
        direction = lusd_direction(delta, latents, source, mask, cfg.lambda_reg)
        if region is not None:
            direction = region * direction
        if cfg.normalize:
            scale = scale_schedule(step, cfg.num_steps, cfg.scale_high, cfg.scale_low, cfg.scale_k)
            direction = normalize(direction, scale, region)
        return latents - cfg.lr * direction, average

    def _baseline_step(self, latents, source, cond, stats, region):
        cfg = self.config
        t, noise = self._sample(latents)
        noisy = self._noised(latents, t, noise)
        self.capture(False)
        if cfg.method == "sds":
            eps_empty, eps_target = self._eps([noisy, noisy], t, [cond.empty, cond.target])
            gradient = sds_gradient(guided(eps_empty, eps_target, cfg.guidance_scale), noise)
        else:
            noisy_source = self._noised(source, t, noise)
            e_src_empty, e_src, e_tgt_empty, e_tgt = self._eps(
                [noisy_source, noisy_source, noisy, noisy],
                t,
                [cond.empty, cond.source, cond.empty, cond.target],
            )
            gradient = dds_gradient(
                guided(e_tgt_empty, e_tgt, cfg.guidance_scale),
                guided(e_src_empty, e_src, cfg.guidance_scale),
            )
        stats.unet_calls += 1
        if region is not None:
            gradient = region * gradient
        return latents - cfg.lr * gradient
