"""Attention capture for the LUSD mask, reading only what the mask needs.

Only two kinds of layers get a special processor; every other layer keeps the
fast default (SDPA):
- cross-attention at the mask's cross level (latent/4): the target branch's
  probabilities of the focus-token columns, averaged over heads and tokens;
- self-attention at the mask's self level (latent/2): the target branch's query
  and key. ``S @ c`` is computed after the pass as an attention call whose values
  are the cross map, so the (hw x hw) matrix is never materialised.

The map is read from the *current* UNet pass (the authors read the previous
accepted pass; the two differ by a one-step lag, LUSD_SPEC).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

_NAME = re.compile(r"^(down_blocks|up_blocks|mid_block)(?:\.(\d+))?\..*\.(attn1|attn2)\.processor$")


@dataclass
class MaskLayers:
    """Processor names of the layers the mask reads, and their downsampling factors."""

    cross: list[str]
    self_: list[str]
    cross_factor: int
    self_factor: int


def attention_factors(unet) -> dict[str, tuple[int, bool]]:
    """Map each attention processor name to (downsampling factor, is cross-attention)."""
    n_down = len(unet.config.down_block_types)
    n_up = len(unet.config.up_block_types)
    result: dict[str, tuple[int, bool]] = {}
    for name in unet.attn_processors:
        match = _NAME.match(name)
        if match is None:
            continue
        block, index, kind = match.groups()
        if block == "down_blocks":
            level = int(index)
        elif block == "mid_block":
            level = n_down - 1
        else:
            level = n_up - 1 - int(index)
        result[name] = (2**level, kind == "attn2")
    return result


def choose_mask_layers(unet, cross_factor: int = 4, self_factor: int = 2) -> MaskLayers:
    """Cross layers nearest latent/``cross_factor``, self layers nearest latent/``self_factor``."""
    factors = attention_factors(unet)

    def nearest(want: int, cross: bool) -> tuple[int, list[str]]:
        available = sorted({f for f, c in factors.values() if c == cross})
        if not available:
            kind = "cross" if cross else "self"
            raise ValueError(f"the UNet has no {kind}-attention layers to build the LUSD mask from")
        best = min(available, key=lambda f: (abs(math.log2(f / want)), f))
        return best, [n for n, (f, c) in factors.items() if f == best and c == cross]

    cross_best, cross_names = nearest(cross_factor, True)
    self_best, self_names = nearest(self_factor, False)
    return MaskLayers(cross_names, self_names, cross_best, self_best)


@dataclass
class AttentionStore:
    """What one UNet pass leaves for the mask; reset before every pass."""

    branch: int = 1
    focus: torch.Tensor | None = None
    active: bool = False
    cross_maps: list[torch.Tensor] = field(default_factory=list)
    self_queries_keys: list[tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=list)

    def reset(self, active: bool) -> None:
        self.active = active and self.focus is not None and len(self.focus) > 0
        self.cross_maps.clear()
        self.self_queries_keys.clear()


def is_plain_attention(attn: Attention, hidden_states: torch.Tensor, attention_mask) -> bool:
    """Whether ``split_heads_qkv`` / ``merge_heads_out`` reproduce this layer exactly."""
    return (
        attention_mask is None
        and attn.spatial_norm is None
        and attn.group_norm is None
        and hidden_states.ndim == 3
        and attn.norm_q is None
        and attn.norm_k is None
    )


def split_heads_qkv(
    attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query, key and value of a plain attention layer, each (batch, heads, tokens, head_dim)."""
    batch = hidden_states.shape[0]
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
    head_dim = key.shape[-1] // attn.heads
    return tuple(
        x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value)
    )


def merge_heads_out(attn: Attention, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The layer's output from the per-head attention output (batch, heads, tokens, head_dim)."""
    batch, heads, _, head_dim = out.shape
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


class _CaptureProcessor:
    """AttnProcessor2_0 that also hands its target-branch query/key to ``capture``."""

    def __init__(self, store: AttentionStore):
        self.store = store
        self._default = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if not is_plain_attention(attn, hidden_states, attention_mask) or not self.store.active:
            if self.store.active:
                raise NotImplementedError("LUSD mask capture supports standard SD attention only")
            return self._default(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        query, key, value = split_heads_qkv(attn, hidden_states, encoder_hidden_states)
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        self.capture(query[self.store.branch], key[self.store.branch], attn.scale)
        return merge_heads_out(attn, out.to(query.dtype), hidden_states)

    def capture(self, query: torch.Tensor, key: torch.Tensor, scale: float) -> None:
        raise NotImplementedError


class CrossCaptureProcessor(_CaptureProcessor):
    """Keeps the head-averaged probabilities of the focus columns, averaged over those tokens."""

    def capture(self, query: torch.Tensor, key: torch.Tensor, scale: float) -> None:
        precise = torch.promote_types(query.dtype, torch.float32)  # fp16/bf16 scores overflow
        scores = torch.einsum("hqd,hkd->hqk", query.to(precise), key.to(precise)) * scale
        probs = scores.softmax(dim=-1).mean(dim=0)  # (hw, tokens)
        focus = self.store.focus.to(probs.device)
        self.store.cross_maps.append(probs[:, focus].mean(dim=-1))


class SelfCaptureProcessor(_CaptureProcessor):
    """Keeps query and key; ``S @ c`` is computed once the cross map is known."""

    def capture(self, query: torch.Tensor, key: torch.Tensor, scale: float) -> None:
        self.store.self_queries_keys.append((query, key, scale))


def install_capture(unet, layers: MaskLayers, store: AttentionStore) -> None:
    """Put capture processors on the mask layers and the default SDPA processor elsewhere."""
    processors = {}
    for name in unet.attn_processors:
        if name in layers.cross:
            processors[name] = CrossCaptureProcessor(store)
        elif name in layers.self_:
            processors[name] = SelfCaptureProcessor(store)
        else:
            processors[name] = AttnProcessor2_0()
    unet.set_attn_processor(processors)


def _resize(flat: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    grid = flat.reshape(1, 1, *from_hw)
    if from_hw != to_hw:
        grid = F.interpolate(grid, size=to_hw, mode="bicubic", align_corners=False)
    return grid[0, 0]


def refined_map(
    store: AttentionStore, latent_hw: tuple[int, int], layers: MaskLayers
) -> torch.Tensor:
    """The normalised LUSD map (latent_hw, values in [0, 1]) of the last captured pass."""
    height, width = latent_hw
    cross_hw = (height // layers.cross_factor, width // layers.cross_factor)
    self_hw = (height // layers.self_factor, width // layers.self_factor)
    cross = torch.stack(store.cross_maps).mean(dim=0)
    column = _resize(cross, cross_hw, self_hw).reshape(-1)
    refined = torch.zeros_like(column)
    for query, key, scale in store.self_queries_keys:
        # SDPA's fused kernels want 4-D inputs and a value as wide as the query; a 3-D
        # call or a one-channel value falls back to the explicit softmax (3x slower at
        # 4096 tokens on CPU). So the map rides in channel 0 of a query-wide value.
        values = query.new_zeros(query.shape)
        values[..., 0] = column.to(query.dtype)
        out = F.scaled_dot_product_attention(query[None], key[None], values[None], scale=scale)
        refined += out[0, ..., 0].to(refined.dtype).mean(dim=0)
    refined /= len(store.self_queries_keys)
    full = _resize(refined, self_hw, latent_hw)
    low, high = full.min(), full.max()
    return (full - low) / (high - low).clamp_min(1e-8)
