"""Rank an edit's candidates (one per seed) with the diffusion model itself.

The model as a zero-shot classifier (Li et al. 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier"): noise a candidate's latent at fixed timesteps with fixed noises and
ask how much better the target prompt than the source prompt predicts that noise,

    margin(c) = mean_{t, eps, pixels in the mask} (||eps(z_t, source) - eps||^2
                                                   - ||eps(z_t, target) - eps||^2) / C,

minus the same margin of the unedited source latent (which makes margins comparable across
edits), less a penalty for how much the candidate changed outside its mask. The score
squashes that into [SCORE_MIN, SCORE_MAX] with a logistic curve; it is absolute: a
candidate's score does not depend on the other candidates, so a fixed review threshold
applies. All candidates and the source share the timesteps and noises (drawn from a seeded
CPU generator), so differences between candidates are not noise-sampling luck.

Cost: ``2 * len(timesteps) * noise_samples`` UNet rows per candidate (80 by default), plus as
many once per edit for the source latent, batched over candidates into passes of at most
``max_batch`` rows.

Measured on the shapes model (docs/judge.md): the score separates good from bad edits across
edits (a review flag), but on held-out cases it does not pick the better of one edit's seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lusd.distill import Conditioning, concat_embeddings

SCORE_MIN = 0.0
SCORE_MAX = 1.0
#: Review threshold: flag an edit whose best candidate scores below this (bench/judge.py).
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge measures (defaults: the best on the shapes tuning cases, bench/judge.py).

    timesteps / noise_samples: where the margin is measured, each timestep with the same
    ``noise_samples`` noises; seed: the noises' generator seed. in_mask: average the margin
    over the candidate's mask rather than the whole latent. paste: judge the candidate as
    paste-back will show it (source latent outside the mask thresholded at
    ``paste_threshold`` and dilated by one latent pixel). relative: subtract the source
    latent's margin. outside_weight: penalty per unit of mean squared latent change outside
    the mask. center / scale: the logistic curve turning the combined value into a score
    (the value ``center`` scores 0.5).
    max_batch: most UNet rows in one pass.
    """

    timesteps: tuple[int, ...] = (650, 725, 800, 875, 950)
    noise_samples: int = 8
    seed: int = 0
    in_mask: bool = True
    paste: bool = True
    paste_threshold: float = 0.25
    relative: bool = True
    outside_weight: float = 0.1
    center: float = 0.04
    scale: float = 0.02
    max_batch: int = 64


@dataclass
class JudgeResult:
    """Scores (higher is better, in [SCORE_MIN, SCORE_MAX]) and the terms behind them."""

    scores: list[float]
    parts: dict[str, list[float]] = field(default_factory=dict)
    unet_passes: int = 0
    seconds: float = 0.0

    @property
    def best(self) -> int:
        """Index of the highest-scoring candidate (the first on ties)."""
        return max(range(len(self.scores)), key=self.scores.__getitem__)


def squash(value: torch.Tensor, center: float, scale: float) -> torch.Tensor:
    """SCORE_MIN + (SCORE_MAX - SCORE_MIN) * sigmoid((value - center) / scale)."""
    return SCORE_MIN + (SCORE_MAX - SCORE_MIN) * torch.sigmoid((value - center) / scale)


def paste_weights(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where paste-back keeps the candidate: mask >= threshold, dilated by one pixel."""
    return F.max_pool2d((masks >= threshold).float(), 3, stride=1, padding=1)


def _as_masks(masks: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if masks is None:
        return None
    masks = masks.to(like.device, torch.float32)
    if masks.dim() == 3:
        masks = masks[:, None]
    if masks.shape[0] != like.shape[0] or masks.shape[-2:] != like.shape[-2:]:
        raise ValueError(
            f"masks of shape {tuple(masks.shape)} do not fit candidates of shape "
            f"{tuple(like.shape)}: give one (h, w) mask per candidate"
        )
    return masks.clamp(0, 1)


def _errors(
    pipe: Any, latents: torch.Tensor, cond: Conditioning, settings: JudgeSettings
) -> tuple[torch.Tensor, int]:
    """Mean over timesteps and noises of the per-pixel squared-error difference
    (source prompt minus target prompt), shape (n, h, w); and the UNet passes made."""
    n = latents.shape[0]
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    alphas = pipe.scheduler.alphas_cumprod.to(torch.float32)
    rows, noises, steps = [], [], []
    for t in settings.timesteps:
        for _ in range(settings.noise_samples):
            noise = torch.randn((1, *latents.shape[1:]), generator=generator).to(latents.device)
            abar = alphas[t].to(latents.device)
            rows.append(abar.sqrt() * latents + (1 - abar).sqrt() * noise)
            noises.append(noise.expand(n, -1, -1, -1))
            steps.append(t)
    inputs = torch.cat(rows)  # (samples * n, C, h, w), sample-major
    targets = torch.cat(noises)
    timesteps = torch.tensor(steps, device=latents.device).repeat_interleave(n)
    margin = torch.zeros(inputs.shape[0], *latents.shape[-2:], device=latents.device)
    half = max(settings.max_batch // 2, 1)
    passes = 0
    for start in range(0, inputs.shape[0], half):
        x = inputs[start : start + half]
        m = x.shape[0]
        emb = concat_embeddings([cond.source] * m + [cond.target] * m)
        eps = pipe.predict_eps(x.repeat(2, 1, 1, 1), timesteps[start : start + m].repeat(2), emb)
        err = ((eps.float() - targets[start : start + m].repeat(2, 1, 1, 1)) ** 2).mean(1)
        margin[start : start + m] = err[:m] - err[m:]
        passes += 1
    return margin.view(-1, n, *latents.shape[-2:]).mean(0), passes


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.flatten(1).mean(1)
    weights = weights.flatten(1)
    return (values.flatten(1) * weights).sum(1) / weights.sum(1).clamp_min(1e-6)


@torch.inference_mode()
def judge_candidates(
    pipe: Any,
    source_latents: torch.Tensor,
    candidates: torch.Tensor,
    cond: Conditioning,
    masks: torch.Tensor | None = None,
    region: torch.Tensor | None = None,
    settings: JudgeSettings = JudgeSettings(),  # noqa: B008 - frozen, never mutated
) -> JudgeResult:
    """Score each of ``candidates`` (K, C, h, w), final latents of one edit of
    ``source_latents`` (1, C, h, w) under ``cond`` (source and target prompts).

    ``masks`` (K, 1, h, w) or (K, h, w) in [0, 1]: each candidate's final LUSD mask, or None
    for methods without one (the whole latent then counts). ``region`` (1, 1, h, w) in
    [0, 1]: the part of the picture the edit may touch; it limits every mask. Scores are
    absolute (independent of the other candidates) and deterministic.
    """
    start = time.perf_counter()
    device = candidates.device
    source = source_latents.to(device, torch.float32)
    cands = candidates.to(torch.float32)
    masks = _as_masks(masks, cands)
    if region is not None:
        region = region.to(device, torch.float32).expand(cands.shape[0], 1, *cands.shape[-2:])
        masks = region if masks is None else masks * region
    keep = (
        None
        if masks is None
        else (paste_weights(masks, settings.paste_threshold) if settings.paste else masks)
    )
    shown = cands if keep is None or not settings.paste else keep * cands + (1 - keep) * source
    maps, passes = _errors(pipe, torch.cat([source, shown]), cond, settings)
    weights = keep if settings.in_mask else None
    margin = _weighted_mean(maps[1:], None if weights is None else weights[:, 0])
    if settings.relative:
        margin = margin - _weighted_mean(
            maps[:1].expand_as(maps[1:]), None if weights is None else weights[:, 0]
        )
    change = ((cands - source) ** 2).mean(1)
    outside = torch.zeros_like(margin) if masks is None else _weighted_mean(change, 1 - masks[:, 0])
    value = margin - settings.outside_weight * outside
    scores = squash(value, settings.center, settings.scale)
    return JudgeResult(
        scores=[float(s) for s in scores],
        parts={"margin": margin.tolist(), "outside_change": outside.tolist()},
        unet_passes=passes,
        seconds=time.perf_counter() - start,
    )


def unet_rows_per_candidate(settings: JudgeSettings = JudgeSettings()) -> int:  # noqa: B008
    """UNet rows (one latent, one prompt) the judge spends per candidate."""
    return 2 * len(settings.timesteps) * settings.noise_samples


__all__ = [
    "DEFAULT_THRESHOLD",
    "SCORE_MAX",
    "SCORE_MIN",
    "JudgeResult",
    "JudgeSettings",
    "judge_candidates",
    "unet_rows_per_candidate",
]
