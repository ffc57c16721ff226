"""Each formula of LUSD_SPEC, checked on hand-computed cases."""

import math

import pytest
import torch

from lusd.distill import guided
from lusd.rules.dds import dds_gradient
from lusd.rules.lusd import (
    ema_update,
    lusd_direction,
    narrowing_weight,
    normalize,
    passes_filter,
    progressive_mask,
    scale_schedule,
)
from lusd.rules.sds import sds_gradient


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_scale_schedule_endpoints_and_middle():
    high, low, k, n = 0.15, 0.01, 5.0, 300
    assert scale_schedule(0, n, high, low, k) == pytest.approx(
        low + (high - low) * (1 - sigmoid(-k))
    )
    assert scale_schedule(n - 1, n, high, low, k) == pytest.approx(
        low + (high - low) * (1 - sigmoid(k))
    )
    assert scale_schedule(0, n, high, low, k) == pytest.approx(0.14906, abs=1e-4)
    assert scale_schedule(n - 1, n, high, low, k) == pytest.approx(0.01094, abs=1e-4)
    values = [scale_schedule(i, n, high, low, k) for i in range(n)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    # symmetric around the middle of the run
    assert scale_schedule(0, 3, 1.0, 0.0, k) + scale_schedule(2, 3, 1.0, 0.0, k) == pytest.approx(
        1.0
    )


def test_narrowing_weight_is_linear_from_zero_to_one():
    assert narrowing_weight(0, 5) == 0.0
    assert narrowing_weight(4, 5) == 1.0
    assert narrowing_weight(2, 5) == 0.5
    assert narrowing_weight(0, 1) == 0.0


def test_ema_first_map_initialises_then_blends():
    first = torch.tensor([1.0, 0.0])
    average = ema_update(None, first, 0.1)
    assert torch.equal(average, first) and average is not first
    blended = ema_update(average, torch.tensor([0.0, 1.0]), 0.1)
    assert torch.allclose(blended, torch.tensor([0.9, 0.1]))


def test_progressive_mask_goes_from_global_to_local():
    mask = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(progressive_mask(mask, 0.0), torch.ones(3))
    assert torch.equal(progressive_mask(mask, 1.0), mask)
    assert torch.allclose(progressive_mask(mask, 0.5), torch.tensor([0.5, 0.75, 1.0]))


def test_lusd_direction_masks_delta_and_pulls_back_to_source():
    delta = torch.tensor([2.0, 4.0])
    latents, source = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 3.0])
    mask = torch.tensor([1.0, 0.5])
    got = lusd_direction(delta, latents, source, mask, 0.02)
    assert torch.allclose(got, torch.tensor([0.98 * 2 + 0.02 * 1, 0.98 * 2 + 0.02 * -2]))
    assert torch.allclose(lusd_direction(delta, latents, source, None, 0.0), delta)


def test_normalize_sets_the_standard_deviation():
    g = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(1)) * 7
    assert normalize(g, 0.15).std().item() == pytest.approx(0.15, rel=1e-5)
    assert torch.isfinite(normalize(torch.zeros(3), 0.1)).all()


def test_filter_threshold():
    delta = torch.tensor([0.0, 0.02])  # std (unbiased) = 0.01414
    assert passes_filter(delta, 0.01)
    assert not passes_filter(delta, 0.02)


def test_guidance_and_baseline_gradients():
    uncond, cond = torch.tensor([1.0]), torch.tensor([2.0])
    assert guided(uncond, cond, 7.5).item() == pytest.approx(1 + 7.5)
    assert sds_gradient(torch.tensor([3.0]), torch.tensor([1.0])).item() == 2.0
    assert dds_gradient(torch.tensor([3.0]), torch.tensor([1.0])).item() == 2.0
