"""PDS: the posterior formulas on hand-computed values, AdamW, the grid, and the rule."""

import math

import numpy as np
import pytest
import torch

from lusd.config import EditConfig, preset_config
from lusd.distill import Conditioning, Distiller
from lusd.edit_path import generator_for
from lusd.errors import ConfigError
from lusd.rules.pds import (
    PDS,
    adamw_step,
    grid_steps,
    pds_gradient,
    pds_noise,
    posterior_coefficients,
    predicted_x0,
)

ARGS = ("a red cat", "a blue dog")


def pixels(output, k=0):
    return np.asarray(output.images[k], dtype=int)


# ---- formulas ------------------------------------------------------------------------------------


def test_posterior_coefficients_by_hand():
    abar = torch.tensor([0.9, 0.8, 0.5])
    c0, c1, sigma = posterior_coefficients(abar, torch.tensor([1, 2]), torch.tensor([0, 0]))
    # t = 1, t_prev = 0: beta = 1 - 0.8 / 0.9 = 1/9
    beta = 1 / 9
    assert c0[0].item() == pytest.approx(math.sqrt(0.9) * beta / 0.2, rel=1e-6)
    assert c1[0].item() == pytest.approx(math.sqrt(1 - beta) * 0.1 / 0.2, rel=1e-6)
    assert sigma[0].item() == pytest.approx(math.sqrt(0.1 / 0.2 * beta), rel=1e-6)
    # t = 2, t_prev = 0 (a grid step of two): the authors' beta_t is still ONE training
    # step's, 1 - 0.5 / 0.8, not 1 - 0.5 / 0.9
    beta = 1 - 0.5 / 0.8
    assert c0[1].item() == pytest.approx(math.sqrt(0.9) * beta / 0.5, rel=1e-6)
    assert c1[1].item() == pytest.approx(math.sqrt(1 - beta) * 0.1 / 0.5, rel=1e-6)
    assert sigma[1].item() == pytest.approx(math.sqrt(0.1 / 0.5 * beta), rel=1e-6)


def test_pds_noise_by_hand():
    abar_t, c0, c1, sigma = (torch.tensor(v) for v in (0.64, 0.5, 0.25, 0.2))
    x_t, eps, x_prev = torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.9)
    x0 = (1.0 - 0.6 * 0.5) / 0.8  # (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    assert predicted_x0(x_t, eps, abar_t).item() == pytest.approx(x0)
    mean = 0.5 * x0 + 0.25 * 1.0
    z = pds_noise(x_prev, x_t, eps, abar_t, c0, c1, sigma)
    assert z.item() == pytest.approx((0.9 - mean) / 0.2)
    assert torch.equal(
        pds_gradient(torch.tensor([1.0, float("nan")]), torch.tensor([0.5, 0.0])),
        torch.tensor([0.5, 0.0]),
    )


def test_adamw_step_equals_torchs():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(2, 3, generator=gen)
    grads = [torch.randn(2, 3, generator=gen) for _ in range(4)]
    param = torch.nn.Parameter(start.clone())
    optimiser = torch.optim.AdamW([param], lr=0.1)  # the defaults PDS uses
    mine, first, second = start.clone(), torch.zeros(2, 3), torch.zeros(2, 3)
    for n, grad in enumerate(grads, start=1):
        param.grad = grad.clone()
        optimiser.step()
        mine, first, second = adamw_step(mine, grad, first, second, n, 0.1, 0.01)
        assert torch.allclose(mine, param.detach(), atol=1e-6)


def test_grid_steps_are_the_authors_indices():
    # 500 DDIM steps of 1000, steps_offset 1: t = 2k + 1; the authors' k in [10, 490)
    assert grid_steps(1000, 500, 21, 980) == (2, 10, 490)
    assert grid_steps(1000, 500, 0, 1000) == (2, 1, 500)  # k >= 1: t_prev is step k - 1
    with pytest.raises(ConfigError, match=r"^pds_grid must be at most the model's 1000"):
        grid_steps(1000, 2000, 21, 980)
    with pytest.raises(ConfigError, match=r"^t range \[500, 501\) holds no step of PDS's"):
        grid_steps(1000, 500, 500, 501)


def test_the_loop_draws_grid_timesteps_and_two_noises():
    seen = []

    def unet(latents, timestep, embeddings):
        seen.append(timestep)
        return torch.zeros_like(latents)

    config = preset_config("pds", num_steps=40)
    cond = Conditioning(*(torch.zeros(1, 3, 2) for _ in range(3)))
    distiller = Distiller(unet, torch.linspace(0.99, 0.01, 1000), config, torch.Generator())
    distiller.run(torch.zeros(1, 4, 4, 4), cond, use_mask=False)
    steps = torch.cat(seen)
    assert len(seen) == 40 and len(steps) == 160  # one pass of four rows per iteration
    assert (steps % 2 == 1).all() and steps.min() >= 21 and steps.max() <= 979


# ---- the rule ---------------------------------------------------------------------------------


def test_pds_edits_without_gradients(tiny_pipe, noise_photo):
    out = tiny_pipe(noise_photo, *ARGS, preset="pds", num_steps=3, generator=generator_for(0))
    still = tiny_pipe(
        noise_photo, *ARGS, preset="pds", num_steps=3, lr=1e-12, generator=generator_for(0)
    )
    assert np.abs(pixels(out) - pixels(still)).max() > 10
    assert out.stats["unet_calls"] == 3
    assert all(p.grad is None for p in tiny_pipe.unet.parameters())


def test_the_preset_is_the_authors():
    config = preset_config("pds")
    assert (config.method, config.num_steps, config.guidance_scale, config.lr) == (
        "pds", 500, 50.0, 0.1,
    )  # fmt: skip
    assert (config.t_min, config.t_max) == (21, 980)
    assert config.options == {"pds_grid": 500, "pds_weight_decay": 0.01}
    assert (PDS.unet_passes, PDS.needs_grad, PDS.rows_per_lane) == (1, False, 4)


def test_settings_are_checked():
    config = EditConfig(method="pds")
    with pytest.raises(ConfigError, match=r"^pds_weight_decay must lie in \[0.0, 1.0\], got 2.0$"):
        config.replace(pds_weight_decay=2)
    with pytest.raises(ConfigError, match=r"^pds_grid expects int, got 'many'$"):
        config.replace(pds_grid="many")
