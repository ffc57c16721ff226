"""Attention capture for the LUSD mask, reading only what the mask needs.

Only two kinds of layers get a special processor; every other layer keeps the
fast default (SDPA):
- cross-attention at the mask's cross level (latent/4): the target branch's
  probabilities of the focus-token columns, averaged over heads and tokens;
- self-attention at the mask's self level (latent/2): ``S @ c`` as an attention
  call whose values are the cross map, so the (hw x hw) matrix is never
  materialised. A self layer that runs after every cross layer of the mask (the
  decoder's) adds the map as one more value channel of its own attention call,
  sharing its softmax; one that runs earlier keeps its target-branch query and key
  for a call after the pass. Either way the result is the same ``S @ c``.

The map is read from the *current* UNet pass (the authors read the previous
accepted pass; the two differ by a one-step lag, LUSD_SPEC).

The store belongs to one edit, not to the UNet: every layer carries a
:class:`CaptureProcessor` that reads the store of the edit running in its own thread
(:func:`capturing`), so edits in several threads share one model without sharing state.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

_NAME = re.compile(r"^(down_blocks|up_blocks|mid_block)(?:\.(\d+))?\..*\.(attn1|attn2)\.processor$")
_POSITION = re.compile(
    r"^(down_blocks|mid_block|up_blocks)(?:\.(\d+))?\.attentions\.(\d+)"
    r"\.transformer_blocks\.(\d+)\.(attn1|attn2)\.processor$"
)
_STAGES = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


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
    """What one UNet pass leaves for the mask; reset before every pass.

    ``reset(rows, focus)`` names the batch rows to read (the target branch of the lanes
    whose mask is built) and each row's focus-token positions. ``latent_hw`` (the
    latent's height and width, set per edit) lets the decoder's self layers refine the
    maps inside the pass; without it every self layer keeps its queries and keys for
    :func:`refined_maps`.
    """

    layers: MaskLayers
    latent_hw: tuple[int, int] | None = None
    rows: list[int] = field(default_factory=list)
    focus: list[torch.Tensor] = field(default_factory=list)
    #: per cross layer: one map (hw,) per row
    cross_maps: list[list[torch.Tensor]] = field(default_factory=list)
    #: per self layer kept for later: (queries of the rows, keys of the rows, scale)
    self_queries_keys: list[tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=list)
    #: per self layer refined in the pass: one map per row
    refined_in_pass: list[list[torch.Tensor]] = field(default_factory=list)
    _columns: list[torch.Tensor] | None = None
    _roles: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cross = self.layers.cross
        self._roles = {name: "cross" for name in cross}
        for name in self.layers.self_:
            self._roles[name] = "self-in-pass" if runs_after_all(name, cross) else "self"

    @property
    def active(self) -> bool:
        return bool(self.rows)

    def role(self, name: str) -> str | None:
        """What layer ``name`` records in this pass: "cross", "self-in-pass", "self" or None."""
        return self._roles.get(name) if self.rows else None

    def reset(self, rows: list[int], focus: list[torch.Tensor]) -> None:
        self.rows, self.focus = list(rows), list(focus)
        self.cross_maps.clear()
        self.self_queries_keys.clear()
        self.refined_in_pass.clear()
        self._columns = None

    def cross_columns(self) -> list[torch.Tensor] | None:
        """Each row's cross map at the self grid, flattened, once every cross layer has run."""
        if self.latent_hw is None:
            return None
        if len(self.cross_maps) < len(self.layers.cross):
            return None
        if self._columns is None:
            self._columns = cross_columns(self, self.latent_hw, self.layers)
        return self._columns


def cross_column(self) -> torch.Tensor | None:
    """The pass's cross map at the self grid, flattened, once every cross layer has run."""
    if self.latent_hw is None:
        return None
    if len(self.cross_maps) < len(self.layers.cross):
        return None
    if self._column is None:
        self._column = cross_column(self, self.latent_hw, self.layers)
    return self._column


def cross_columns(
    store: AttentionStore, latent_hw: tuple[int, int], layers: MaskLayers
) -> list[torch.Tensor]:
    """Each row's layer-averaged cross map, resized to the self grid and flattened."""
    cross_hw, self_hw = _grid(latent_hw, layers.cross_factor), _grid(latent_hw, layers.self_factor)
    return [
        _resize(
            torch.stack([maps[r] for maps in store.cross_maps]).mean(dim=0), cross_hw, self_hw
        ).reshape(-1)
        for r in range(len(store.rows))
    ]


def _grid(latent_hw: tuple[int, int], factor: int) -> tuple[int, int]:
    return latent_hw[0] // factor, latent_hw[1] // factor


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


_CURRENT: ContextVar[AttentionStore | None] = ContextVar("lusd_attention_store", default=None)


@contextlib.contextmanager
def capturing(store: AttentionStore) -> Iterator[AttentionStore]:
    """Make ``store`` the one the UNet's capture processors fill in this thread."""
    token = _CURRENT.set(store)
    try:
        yield store
    finally:
        _CURRENT.reset(token)


class CaptureProcessor:
    """AttnProcessor2_0 that, when the running edit's store asks for this layer, also reads
    what the mask needs from the target branch."""

    def __init__(self, name: str):
        self.name = name
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
        store = _CURRENT.get()
        role = None if store is None else store.role(self.name)
        if role is None:
            return self._default(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if not is_plain_attention(attn, hidden_states, attention_mask):
            raise NotImplementedError("LUSD mask capture supports standard SD attention only")
        query, key, value = split_heads_qkv(attn, hidden_states, encoder_hidden_states)
        if role == "cross":
            out = _attend_and_keep(query, key, value, attn.scale, store, _capture_cross)
        else:
            out = _attend_self(query, key, value, attn.scale, store, role == "self-in-pass")
        return merge_heads_out(attn, out.to(query.dtype), hidden_states)


def _attend_and_keep(query, key, value, scale: float, store: AttentionStore, keep) -> torch.Tensor:
    out = F.scaled_dot_product_attention(query, key, value, scale=scale)
    keep(store, query[store.rows], key[store.rows], scale)
    return out


def _capture_cross(store: AttentionStore, query: torch.Tensor, key: torch.Tensor, scale: float):
    """Keep each row's head-averaged probabilities of its focus columns, averaged over
    those tokens."""
    precise = torch.promote_types(query.dtype, torch.float32)  # fp16/bf16 scores overflow
    maps = []
    for row_query, row_key, focus in zip(query, key, store.focus, strict=True):
        scores = torch.einsum("hqd,hkd->hqk", row_query.to(precise), row_key.to(precise)) * scale
        probs = scores.softmax(dim=-1).mean(dim=0)  # (hw, tokens)
        maps.append(probs[:, focus.to(probs.device)].mean(dim=-1))
    store.cross_maps.append(maps)


def _capture_self(store: AttentionStore, query: torch.Tensor, key: torch.Tensor, scale: float):
    store.self_queries_keys.append((query, key, scale))


def _attend_self(query, key, value, scale: float, store: AttentionStore, in_pass: bool):
    """``S @ c`` of a self layer: inside its own attention call when the cross maps are
    complete (``in_pass``, the decoder's layers), else from its queries and keys after the
    pass."""
    columns = store.cross_columns() if in_pass else None
    if columns is None:
        return _attend_and_keep(query, key, value, scale, store, _capture_self)
    rest = [i for i in range(query.shape[0]) if i not in store.rows]
    out = torch.empty_like(query)
    if rest:
        out[rest] = F.scaled_dot_product_attention(query[rest], key[rest], value[rest], scale=scale)
    refined = []
    for row, column in zip(store.rows, columns, strict=True):
        out[row], row_map = attend_with_map(query[row], key[row], value[row], column, scale)
        refined.append(row_map)
    store.refined_in_pass.append(refined)
    return out


def _sdpa(query, key, value, scale: float) -> torch.Tensor:
    """SDPA on (heads, tokens, width) inputs. 4-D inputs and equal query/value widths keep
    its fused kernels: a 3-D call or a narrower value falls back to the explicit softmax
    (3x slower at 4096 tokens on CPU)."""
    return F.scaled_dot_product_attention(query[None], key[None], value[None], scale=scale)[0]


def map_through(query: torch.Tensor, key: torch.Tensor, column: torch.Tensor, scale: float):
    """One layer's head-averaged ``S @ c``: the map rides in channel 0 of a query-wide value."""
    values = query.new_zeros(query.shape)
    values[..., 0] = column.to(query.dtype)
    return _precise(_sdpa(query, key, values, scale)[..., 0]).mean(dim=0)


# A multiple of 8 keeps CUDA's fused kernels; zeros in the query and key leave the scores as
# they are, and the map rides in the value's first extra channel.
_MAP_CHANNELS = 8


def attend_with_map(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, column: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's attention output and its head-averaged ``S @ c`` from one SDPA call."""
    heads, tokens, width = query.shape
    pad = query.new_zeros(heads, tokens, _MAP_CHANNELS)
    carried = pad.clone()
    carried[..., 0] = column.to(query.dtype)
    out = _sdpa(
        torch.cat([query, pad], dim=-1),
        torch.cat([key, pad], dim=-1),
        torch.cat([value, carried], dim=-1),
        scale,
    )
    return out[..., :width], _precise(out[..., width]).mean(dim=0)


def _precise(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.promote_types(values.dtype, torch.float32))


def _forward_position(name: str) -> tuple | None:
    """Where an attention layer runs in the UNet's forward, as a sortable key."""
    match = _POSITION.match(name)
    if match is None:
        return None
    stage, block, attention, transformer, kind = match.groups()
    return (_STAGES[stage], int(block or 0), int(attention), int(transformer), kind)


def runs_after_all(name: str, others: list[str]) -> bool:
    """Whether layer ``name`` runs after every layer in ``others`` (False when unsure)."""
    mine = _forward_position(name)
    positions = [_forward_position(other) for other in others]
    if mine is None or not positions or any(p is None for p in positions):
        return False
    return all(mine > p for p in positions)


def install_capture(unet) -> None:
    """Give every attention layer a :class:`CaptureProcessor` (SDPA unless an edit asks)."""
    unet.set_attn_processor({name: CaptureProcessor(name) for name in unet.attn_processors})


def _resize(flat: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    grid = flat.reshape(1, 1, *from_hw)
    if from_hw != to_hw:
        grid = F.interpolate(grid, size=to_hw, mode="bicubic", align_corners=False)
    return grid[0, 0]


def refined_maps(
    store: AttentionStore, latent_hw: tuple[int, int], layers: MaskLayers
) -> list[torch.Tensor]:
    """The normalised LUSD map (latent_hw, values in [0, 1]) of each row of the last
    captured pass."""
    maps = []
    for r, column in enumerate(cross_columns(store, latent_hw, layers)):
        parts = [row_maps[r] for row_maps in store.refined_in_pass]
        for query, key, scale in store.self_queries_keys:
            parts.append(map_through(query[r], key[r], column, scale))
        refined = torch.stack(parts).mean(dim=0)
        full = _resize(refined, _grid(latent_hw, layers.self_factor), latent_hw)
        low, high = full.min(), full.max()
        maps.append((full - low) / (high - low).clamp_min(1e-8))
    return maps
