"""The optimisation loop with a fake UNet: call counts, filter retries, exact updates."""

import torch

from lusd.config import LUSD_LR, EditConfig, preset_config
from lusd.distill import Conditioning, Distiller
from lusd.rules.lusd import normalize, scale_schedule

SHAPE = (1, 4, 8, 8)


class FakeUNet:
    """eps = fixed per-branch tensors; records the batch sizes it was called with."""

    def __init__(self, delta_std: float = 1.0):
        gen = torch.Generator().manual_seed(3)
        base = torch.randn(SHAPE, generator=gen)
        self.delta = base / base.std() * delta_std
        self.batches: list[int] = []

    def __call__(self, latents, timestep, embeddings):
        assert not torch.is_grad_enabled() or not latents.requires_grad
        self.batches.append(latents.shape[0])
        # the embedding's first value tells the branch: 0 empty, 1 source, 2 target
        branch = embeddings[:, 0, 0].view(-1, 1, 1, 1)
        return torch.where(branch == 2, self.delta, torch.zeros(SHAPE)).expand(
            latents.shape[0], *SHAPE[1:]
        )


def conditioning():
    return Conditioning(*(torch.full((1, 3, 2), float(v)) for v in (1, 2, 0)))


def run(config, unet, mask=None):
    alphas = torch.linspace(0.99, 0.01, 1000)
    distiller = Distiller(
        unet,
        alphas,
        config,
        torch.Generator().manual_seed(0),
        read_masks=lambda: None if mask is None else [mask],
    )
    return distiller.run(torch.zeros(SHAPE), conditioning(), use_mask=mask is not None)


def test_one_unet_call_of_batch_two_per_iteration():
    unet = FakeUNet()
    result = run(EditConfig(num_steps=7), unet)
    assert result.stats.unet_calls == 7 and result.stats.iterations == 7
    assert unet.batches == [2] * 7
    assert result.stats.filter_retries == 0


def test_filter_rejects_and_decays_threshold():
    # std(d) = 0.0098: tau 0.01, 0.0099, 0.009801 reject; 0.00970299 accepts -> 3 retries/step
    unet = FakeUNet(delta_std=0.0098)
    result = run(EditConfig(num_steps=4, retry_budget=3), unet)
    assert result.stats.filter_retries == 12
    assert result.stats.unet_calls == 16
    off = run(EditConfig(num_steps=4, use_filter=False), FakeUNet(delta_std=0.0098))
    assert off.stats.filter_retries == 0 and off.stats.unet_calls == 4


def test_retries_stop_at_the_edits_budget():
    # 3 retries a step would make 12; a budget of 1.5 x 4 steps allows 6, then all pass
    result = run(EditConfig(num_steps=4, retry_budget=1.5), FakeUNet(delta_std=0.0098))
    assert result.stats.filter_retries == 6 and result.stats.unet_calls == 10
    # a weak direction that the decaying threshold would take ~600 retries a step to accept
    weak = run(EditConfig(num_steps=50), FakeUNet(delta_std=1e-5))
    assert weak.stats.unet_calls == 50 + 2 * 50 and weak.stats.iterations == 50


def test_an_all_zero_direction_is_accepted_at_once():
    result = run(EditConfig(num_steps=5), FakeUNet(delta_std=0.0))
    assert result.stats.filter_retries == 0 and result.stats.unet_calls == 5


def test_first_step_is_the_normalised_direction():
    unet = FakeUNet()
    cfg = EditConfig(num_steps=1)
    result = run(cfg, unet)
    expected = -LUSD_LR * normalize(0.98 * unet.delta, scale_schedule(0, 1, 0.15, 0.01, 5.0))
    assert torch.allclose(result.latents, expected, atol=1e-6)


def test_mask_is_ignored_at_step_zero_and_applied_progressively():
    unet = FakeUNet()
    mask = torch.zeros(8, 8)
    mask[:4] = 1.0  # top half editable
    result = run(EditConfig(num_steps=3, lambda_reg=0.0), unet, mask=mask)
    assert torch.allclose(result.mask, mask)
    cfg = EditConfig(num_steps=3, lambda_reg=0.0)
    z = torch.zeros(SHAPE)
    for step, beta in enumerate((None, 0.5, 1.0)):
        m = None if beta is None else beta * mask + (1 - beta)
        d = unet.delta if m is None else m * unet.delta
        z = z - cfg.lr * normalize(d, scale_schedule(step, 3, 0.15, 0.01, 5.0))
    assert torch.allclose(result.latents, z, atol=1e-6)
    # the last step (beta = 1) changed nothing outside the mask
    assert result.latents[..., 4:, :].abs().sum() > 0  # earlier global steps did


def test_baselines_batch_sizes_and_update():
    dds_unet, sds_unet = FakeUNet(), FakeUNet()
    dds = run(preset_config("dds", num_steps=3), dds_unet)
    sds = run(preset_config("sds", num_steps=3), sds_unet)
    assert dds_unet.batches == [4, 4, 4] and sds_unet.batches == [2, 2, 2]
    # DDS: both source branches predict 0 and the target predicts delta: grad = 7.5 delta
    assert torch.allclose(dds.latents, -3 * 0.1 * LUSD_LR * 7.5 * dds_unet.delta, atol=1e-5)
    assert dds.stats.unet_calls == 3 and sds.stats.unet_calls == 3


def test_same_seed_same_result_and_interrupt():
    a, b = run(EditConfig(num_steps=5), FakeUNet()), run(EditConfig(num_steps=5), FakeUNet())
    assert torch.equal(a.latents, b.latents)
    alphas = torch.linspace(0.99, 0.01, 1000)
    distiller = Distiller(FakeUNet(), alphas, EditConfig(num_steps=50))
    calls = []
    result = distiller.run(
        torch.zeros(SHAPE),
        conditioning(),
        False,
        on_step=lambda s, t: calls.append(s),
        should_stop=lambda: len(calls) >= 3,
    )
    assert result.stats.iterations == 3
