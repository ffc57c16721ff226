"""The captured mask equals an explicit-probabilities reference written here."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from lusd.attention import (
    AttentionStore,
    CaptureProcessor,
    capturing,
    choose_mask_layers,
    install_capture,
    refined_maps,
)
from lusd.testing.tiny import tiny_components


class ExplicitProbabilities(AttnProcessor):
    """diffusers' explicit-softmax processor that also keeps every probability matrix."""

    def __init__(self, name, sink):
        super().__init__()
        self.name, self.sink = name, sink

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None
    ):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        self.sink[self.name] = attn.get_attention_scores(query, key, None)  # (batch*heads, q, k)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def bicubic(grid, size):
    return F.interpolate(grid[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]


def reference_map(probs, layers, focus, latent_hw, heads_of, row=1, batch=2):
    """LUSD_SPEC, literally: average heads, layers; focus columns; S (hw x hw); S @ c."""
    h, w = latent_hw
    cross = []
    for name in layers.cross:
        p = probs[name]
        heads = heads_of[name]
        target = p.view(batch, heads, *p.shape[1:])[row].mean(0)  # target row, heads averaged
        cross.append(target)
    cross = torch.stack(cross).mean(0)[:, focus].mean(-1)
    fc, fs = layers.cross_factor, layers.self_factor
    c = bicubic(cross.view(h // fc, w // fc), (h // fs, w // fs)).reshape(-1, 1)
    selfs = []
    for name in layers.self_:
        p = probs[name]
        selfs.append(p.view(batch, heads_of[name], *p.shape[1:])[row].mean(0))
    S = torch.stack(selfs).mean(0)
    refined = bicubic((S @ c).view(h // fs, w // fs), (h, w))
    return (refined - refined.min()) / (refined.max() - refined.min())


@pytest.mark.parametrize("in_pass", [True, False], ids=["decoder-in-pass", "all-after-pass"])
@pytest.mark.parametrize("lanes", [1, 2], ids=["one-lane", "two-lanes"])
def test_mask_equals_explicit_reference(in_pass, lanes):
    # float64, so that the fused and explicit kernels agree far below the 1e-4 bar on any CPU
    unet = tiny_components()["unet"].eval().double()
    layers = choose_mask_layers(unet)
    assert layers.cross_factor == 4 and layers.self_factor == 2
    gen = torch.Generator().manual_seed(0)
    # rows are branch-major: sources of every lane, then their targets
    batch = 2 * lanes
    latents = torch.randn(lanes, 4, 16, 24, generator=gen, dtype=torch.float64).repeat(2, 1, 1, 1)
    embeddings = torch.randn(batch, 77, 16, generator=gen, dtype=torch.float64)
    focus = [[3, 5], [2]][:lanes]  # each lane its own focus words
    timestep = torch.tensor([500, 300][:lanes] * 2)

    store = AttentionStore(layers, latent_hw=(16, 24) if in_pass else None)
    install_capture(unet)
    rows = [lanes + j for j in range(lanes)]
    store.reset(rows, [torch.tensor(f) for f in focus])
    with torch.no_grad(), capturing(store):
        fast_out = unet(latents, timestep, encoder_hidden_states=embeddings).sample
    maps = refined_maps(store, (16, 24), layers)
    decoder = [name for name in layers.self_ if name.startswith("up_blocks")]
    assert decoder and len(decoder) < len(layers.self_)
    assert len(store.refined_in_pass) == (len(decoder) if in_pass else 0)
    assert len(store.refined_in_pass) + len(store.self_queries_keys) == len(layers.self_)

    probs, heads_of = {}, {}
    modules = dict(unet.named_modules())
    processors = {}
    for name in unet.attn_processors:
        processors[name] = ExplicitProbabilities(name, probs)
        heads_of[name] = modules[name.removesuffix(".processor")].heads
    unet.set_attn_processor(processors)
    with torch.no_grad():
        slow_out = unet(latents, timestep, encoder_hidden_states=embeddings).sample
    assert len(maps) == lanes
    for ours, row, words in zip(maps, rows, focus, strict=True):
        expected = reference_map(probs, layers, words, (16, 24), heads_of, row, batch)
        assert ours.shape == (16, 24)
        assert torch.allclose(ours, expected, atol=1e-4), (ours - expected).abs().max()
        assert ours.min() == 0 and ours.max() == 1
    assert torch.allclose(fast_out, slow_out, atol=1e-4)  # capture does not change the UNet output


def test_only_the_running_edits_mask_layers_capture():
    unet = tiny_components()["unet"].eval()
    layers = choose_mask_layers(unet)
    install_capture(unet)
    assert all(isinstance(p, CaptureProcessor) for p in unet.attn_processors.values())
    assert all(".attn2." in n for n in layers.cross) and all(".attn1." in n for n in layers.self_)
    store = AttentionStore(layers)
    store.reset([1], [torch.tensor([1])])
    roles = {name: store.role(name) for name in unet.attn_processors}
    assert {n for n, r in roles.items() if r == "cross"} == set(layers.cross)
    assert {n for n, r in roles.items() if r and r.startswith("self")} == set(layers.self_)
    store.reset([], [])
    assert not any(store.role(name) for name in unet.attn_processors)

    latents, embeddings = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 16)
    timestep = torch.tensor([500, 500])
    with torch.no_grad():
        idle = unet(latents, timestep, encoder_hidden_states=embeddings).sample
        other = AttentionStore(layers)
        other.reset([1], [torch.tensor([1])])
        with capturing(other):  # another edit's store: recorded there, output unchanged
            busy = unet(latents, timestep, encoder_hidden_states=embeddings).sample
        unet.set_attn_processor(AttnProcessor2_0())
        plain = unet(latents, timestep, encoder_hidden_states=embeddings).sample
    assert len(other.cross_maps) == len(layers.cross) and not store.cross_maps
    assert torch.equal(idle, plain) and torch.allclose(busy, plain, atol=1e-6)


def test_sd15_layout_levels():
    """On the SD1.5 block layout the mask reads 16x16 cross and 32x32 self attention."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(4, 8, 8, 8),
        layers_per_block=1,
        sample_size=64,
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    layers = choose_mask_layers(unet)
    assert (layers.cross_factor, layers.self_factor) == (4, 2)
    assert sorted({n.split(".attentions")[0] for n in layers.cross}) == [
        "down_blocks.2",
        "up_blocks.1",
    ]
    assert sorted({n.split(".attentions")[0] for n in layers.self_}) == [
        "down_blocks.1",
        "up_blocks.2",
    ]
