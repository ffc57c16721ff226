"""The candidate judge against a fake UNet whose target prompt explains a known pattern."""

import torch

from lusd.distill import Conditioning
from lusd.judge import (
    SCORE_MAX,
    SCORE_MIN,
    JudgeSettings,
    judge_candidates,
    unet_rows_per_candidate,
)

SHAPE = (4, 8, 8)
SETTINGS = JudgeSettings(timesteps=(100, 300), noise_samples=2, center=0.0, scale=10.0, max_batch=8)


class FakePipe:
    """x0-prediction view: the source prompt predicts x0 = 0, the target prompt x0 = ``object``
    inside the top-left quarter; eps follows from x_t. A latent equal to the object is
    explained better by the target prompt than one equal to zero."""

    def __init__(self):
        self.scheduler = type("S", (), {"alphas_cumprod": torch.linspace(0.99, 0.01, 1000)})()
        self.obj = torch.zeros(1, *SHAPE)
        self.obj[..., :4, :4] = 1.0
        self.batches: list[int] = []

    def predict_eps(self, latents, timestep, embeddings):
        self.batches.append(latents.shape[0])
        abar = self.scheduler.alphas_cumprod[timestep].view(-1, 1, 1, 1)
        target = embeddings[:, 0, 0].view(-1, 1, 1, 1) == 2
        x0 = torch.where(target, self.obj, torch.zeros_like(self.obj))
        return (latents - abar.sqrt() * x0) / (1 - abar).sqrt()


def cond():
    return Conditioning(torch.full((1, 3, 2), 1.0), torch.full((1, 3, 2), 2.0))


def quarter_masks(k):
    masks = torch.zeros(k, 8, 8)
    masks[:, :4, :4] = 1.0
    return masks


def candidates(pipe):
    source = torch.zeros(1, *SHAPE)
    edited = pipe.obj.clone()
    half = 0.5 * pipe.obj
    return source, torch.cat([source, half, edited])


def test_candidate_the_target_explains_better_scores_higher():
    pipe = FakePipe()
    source, cands = candidates(pipe)
    result = judge_candidates(pipe, source, cands, cond(), quarter_masks(3), settings=SETTINGS)
    assert result.scores[2] > result.scores[1] > result.scores[0]
    assert result.best == 2
    assert abs(result.parts["margin"][0]) < 1e-6  # unchanged = the source: margin 0
    assert result.scores[0] == 0.5 * (SCORE_MIN + SCORE_MAX)


def test_scores_in_range_deterministic_and_order_free():
    pipe = FakePipe()
    source, cands = candidates(pipe)
    cands = cands + 0.3 * torch.randn(cands.shape, generator=torch.Generator().manual_seed(1))
    masks = quarter_masks(3)
    first = judge_candidates(pipe, source, cands, cond(), masks, settings=SETTINGS)
    again = judge_candidates(pipe, source, cands, cond(), masks, settings=SETTINGS)
    assert first.scores == again.scores
    assert all(SCORE_MIN <= s <= SCORE_MAX for s in first.scores)
    order = [2, 0, 1]
    shuffled = judge_candidates(pipe, source, cands[order], cond(), masks[order], settings=SETTINGS)
    for i, j in enumerate(order):
        assert abs(shuffled.scores[i] - first.scores[j]) < 1e-5
    alone = judge_candidates(pipe, source, cands[1:2], cond(), masks[1:2], settings=SETTINGS)
    assert abs(alone.scores[0] - first.scores[1]) < 1e-5  # absolute: others do not matter


def test_change_outside_the_mask_lowers_the_score():
    pipe = FakePipe()
    source = torch.zeros(1, *SHAPE)
    clean = pipe.obj.clone()
    messy = clean.clone()
    messy[..., 6:, 6:] = 2.0  # far outside the mask and its one-pixel dilation
    settings = JudgeSettings(
        timesteps=(100, 300),
        noise_samples=2,
        outside_weight=1.0,
        center=0.0,
        scale=10.0,
        max_batch=8,
    )
    result = judge_candidates(
        pipe, source, torch.cat([clean, messy]), cond(), quarter_masks(2), settings=settings
    )
    assert result.parts["outside_change"][0] == 0.0
    assert result.parts["outside_change"][1] > 0.0
    assert result.scores[0] > result.scores[1]


def test_batches_are_chunked_and_counted():
    pipe = FakePipe()
    source, cands = candidates(pipe)
    result = judge_candidates(pipe, source, cands, cond(), quarter_masks(3), settings=SETTINGS)
    # 4 latents (source + 3) x 2 timesteps x 2 noises = 16 rows per prompt, 4 rows per pass
    assert pipe.batches == [8] * 4 and result.unet_passes == 4
    assert unet_rows_per_candidate(SETTINGS) == 8


def test_without_masks_the_whole_latent_counts():
    pipe = FakePipe()
    source, cands = candidates(pipe)
    result = judge_candidates(pipe, source, cands, cond(), None, settings=SETTINGS)
    assert result.scores[2] > result.scores[0]
    assert result.parts["outside_change"] == [0.0, 0.0, 0.0]
