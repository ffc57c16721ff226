"""CDS: the PatchNCE loss on hand-built features, the feature hooks, and the rule end to end."""

import copy as copy_module
import math
import threading

import numpy as np
import pytest
import torch

from lusd.config import LUSD_LR, EditConfig, preset_config
from lusd.distill import Conditioning, Distiller
from lusd.edit_path import generator_for
from lusd.errors import ConfigError
from lusd.rules.cds import (
    CDS,
    cds_direction,
    collecting,
    decoder_self_attention,
    install_feature_hooks,
    layer_grid,
    patch_features,
    patch_nce_loss,
)

ARGS = ("a red cat", "a blue dog")


def pixels(output, k=0):
    return np.asarray(output.images[k], dtype=int)


# ---- the loss ------------------------------------------------------------------------------------


def test_patch_nce_two_locations_by_hand():
    tau = 0.07
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    current = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    # row i: [r_i.c_i, then r_i.c_j over j with the i = j place filled with -10] / tau
    row = [0.6 / tau, -10 / tau, 0.8 / tau]  # row 0; row 1 is [0.6, 0.8, -10] / tau
    expected = -(row[0] - math.log(sum(math.exp(v) for v in row)))
    loss = patch_nce_loss(reference, current, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_patch_nce_prefers_the_same_location_and_holds_the_reference():
    features = torch.nn.functional.normalize(
        torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), dim=1
    )
    shuffled = features[torch.roll(torch.arange(16), 1)]
    same = patch_nce_loss(features, features, 0.07)
    assert same < patch_nce_loss(features, shuffled, 0.07)
    assert same < 0.05  # distinct unit vectors: the positive wins by far
    reference = features.clone().requires_grad_(True)
    current = shuffled.clone().requires_grad_(True)
    patch_nce_loss(reference, current, 0.07).backward()
    assert reference.grad is None and current.grad is not None


def test_patch_features_pool_then_normalise():
    # 2x2 grid, 2 channels, locations in row-major order
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 6.0]])
    single = patch_features(features, (2, 2), 1)
    assert torch.allclose(single, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    pooled = patch_features(features, (2, 2), 2)  # mean (1, 2), normalised
    assert torch.allclose(pooled, torch.tensor([[1.0, 2.0]]) / math.sqrt(5))


def test_layer_grid_halves_rounding_up():
    assert layer_grid((16, 16), 16) == (4, 4)
    assert layer_grid((5, 7), 35) == (5, 7)
    assert layer_grid((5, 7), 12) == (3, 4)
    with pytest.raises(ValueError, match="no UNet level"):
        layer_grid((16, 16), 10)


def test_direction_keeps_the_authors_step_sizes():
    dds, nce = torch.tensor([1.0]), torch.tensor([2.0])
    lr = preset_config("cds").lr
    # the authors: 0.1 * (2000/4096 * d + 3 * grad L_NCE)
    step = lr * cds_direction(dds, nce, 3.0)
    assert step.item() == pytest.approx(0.1 * (LUSD_LR * 1.0 + 3.0 * 2.0))


# ---- the hooks -----------------------------------------------------------------------------------


def test_hooks_are_installed_once_and_see_only_their_own_thread(tiny_pipe):
    unet = tiny_pipe.unet
    layers = decoder_self_attention(unet)
    assert len(layers) == 6  # two attention blocks per up block of the tiny UNet
    install_feature_hooks(unet)
    install_feature_hooks(unet)
    assert all(len(m._forward_hooks) == 1 for m in layers)
    copy = copy_module.deepcopy(unet)  # a copy carries the hooks and gets no second one
    install_feature_hooks(copy)
    assert all(len(m._forward_hooks) == 1 for m in decoder_self_attention(copy))

    latents = torch.randn(2, 4, 16, 16)
    text = torch.randn(2, 77, 16)

    def forward():
        with torch.inference_mode():
            unet(latents, torch.tensor([10, 10]), encoder_hidden_states=text)

    with collecting(slice(1, 2)) as features:
        other = threading.Thread(target=forward)
        other.start()
        other.join()
        assert features == []  # another thread's pass
        forward()
    assert [tuple(f.shape) for f in features] == [(1, 16, 16)] * 2 + [(1, 64, 16)] * 2 + [
        (1, 256, 8)
    ] * 2
    forward()  # outside the block: nothing more
    assert len(features) == 6


# ---- the rule ---------------------------------------------------------------------------------


def test_cds_edits_without_touching_the_unets_parameters(tiny_pipe, noise_photo):
    out = tiny_pipe(noise_photo, *ARGS, preset="cds", num_steps=3, generator=generator_for(0))
    still = tiny_pipe(
        noise_photo, *ARGS, preset="cds", num_steps=3, lr=1e-12, generator=generator_for(0)
    )
    assert np.abs(pixels(out) - pixels(still)).max() > 10
    assert out.stats["unet_calls"] == 6  # two passes per iteration
    assert all(p.grad is None for p in tiny_pipe.unet.parameters())


def test_without_the_nce_term_one_step_is_dds(tiny_pipe, noise_photo):
    def edit(preset, **changes):
        return tiny_pipe(
            noise_photo, *ARGS, preset=preset, num_steps=1, generator=generator_for(3),
            output_type="np", **changes,
        )  # fmt: skip

    dds = edit("dds", t_max=949)
    plain = edit("cds", cds_weight=0.0)
    full = edit("cds")
    assert np.array_equal(plain.images, dds.images)
    assert not np.array_equal(full.images, dds.images)


def test_the_preset_is_the_authors():
    config = preset_config("cds")
    assert (config.method, config.num_steps, config.guidance_scale) == ("cds", 200, 7.5)
    assert (config.t_min, config.t_max, config.lr) == (50, 949, 0.1 * LUSD_LR)
    assert config.options == {"cds_patches": 256, "cds_temperature": 0.07, "cds_weight": 3.0}
    assert (CDS.unet_passes, CDS.needs_grad, CDS.needs_empty) == (2, True, True)


# ---- bad input -----------------------------------------------------------------------------------


def test_settings_are_checked():
    config = EditConfig(method="cds")
    with pytest.raises(ConfigError, match=r"^cds_weight must lie in \[0.0, 10000.0\], got -1.0$"):
        config.replace(cds_weight=-1)
    with pytest.raises(ConfigError, match=r"^cds_weight expects float, got 'heavy'$"):
        config.replace(cds_weight="heavy")
    with pytest.raises(ConfigError, match=r"^cds_patches expects int, got 2.5$"):
        config.replace(cds_patches=2.5)


def test_a_unet_without_decoder_self_attention_is_refused():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    message = r"^CDS needs self-attention layers in the UNet's decoder .*; this model has none$"
    with pytest.raises(ConfigError, match=message):
        CDS.check_model(unet)
    # the loop refuses too, before any pass
    cond = Conditioning(*(torch.zeros(1, 3, 16) for _ in range(3)))
    distiller = Distiller(
        lambda x, t, e: x, torch.linspace(0.99, 0.01, 1000), preset_config("cds"), unet=unet
    )
    with pytest.raises(ConfigError, match=message):
        distiller.run(torch.zeros(1, 4, 8, 8), cond, use_mask=False)
