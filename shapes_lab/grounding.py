"""Cross-attention grounding loss for training the shapes model (after TokenCompose).

The renderer knows where every object is, so training can tell every cross-attention
layer where the words of an object should look. Each word that describes an object (its
size, colour, shape and position words) is supervised with that object's coverage mask:

* token loss: the share of the word's attention that falls inside its object,
  ``(1 - inside / total)^2``, averaged over the supervised words (coverage counts
  relative to the object's best-covered location at each layer's resolution);
* pixel loss: at every location, the attention on all the words of one object, as a
  binary cross-entropy against the object's coverage.

The epsilon loss alone rewards a caption's layout only by ``SNR x |object|^2`` where the
layout is hidden in the noise (docs/shapes-model.md), so the plain recipe never learned
to place objects by their position words; this loss teaches the words where to look at
every noise level.

Self-attention grounding (``self_grounding_loss``, optional): at the latent-resolution
self-attention layers, the share of each location's attention that stays in its own
region (its object, or the background), ``(1 - share)^2``, averaged over object and over
background locations. SD's 32x32 self-attention is object-coherent, which is what the
LUSD mask's refinement ``S @ c`` relies on; the tiny model's is not by itself
(docs/shapes-model.md, "Where the mask is lost").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from lusd.attention import is_plain_attention, merge_heads_out, split_heads_qkv
from lusd.shapes.world import WORD_KINDS, Scene, object_mask

#: Latent grid the masks are stored at (64 px / VAE factor 4); layers pool them down.
MASK_GRID = 16


@dataclass
class GroundingStore:
    """Head-averaged cross-attention probabilities (batch, locations, tokens) of one pass."""

    maps: list[torch.Tensor] = field(default_factory=list)
    #: Head-averaged self-attention (batch, locations, locations) of the 16x16 layers.
    self_maps: list[torch.Tensor] = field(default_factory=list)

    def clear(self) -> None:
        self.maps.clear()
        self.self_maps.clear()


def attention_probs(query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention probabilities (batch, heads, queries, keys), with their gradient."""
    return (query @ key.transpose(-1, -2) * scale).softmax(dim=-1)


class GroundingProcessor:
    """Cross-attention computed explicitly, so its probabilities keep their gradient."""

    def __init__(self, store: GroundingStore):
        self.store = store

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
        if not is_plain_attention(attn, hidden_states, attention_mask):
            raise NotImplementedError("grounding supports plain SD cross-attention only")
        query, key, value = split_heads_qkv(attn, hidden_states, encoder_hidden_states)
        probs = attention_probs(query, key, attn.scale)
        self.store.maps.append(probs.mean(dim=1))
        return merge_heads_out(attn, probs @ value, hidden_states)


class SelfGroundingProcessor(AttnProcessor2_0):
    """SDPA everywhere; at the latent-resolution layers it also records the probabilities
    of the first ``SAMPLES`` samples of the batch (with their gradient).

    A quarter of a batch of 32 is enough for the loss and keeps the extra cost at a few
    per cent of a training step (all 32: 27% slower, measured).
    """

    SAMPLES = 8

    def __init__(self, store: GroundingStore):
        super().__init__()
        self.store = store

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
        out = super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)
        if hidden_states.ndim == 3 and hidden_states.shape[1] == MASK_GRID**2:
            if not is_plain_attention(attn, hidden_states, attention_mask):
                raise NotImplementedError("grounding supports plain SD self-attention only")
            query, key, _ = split_heads_qkv(attn, hidden_states[: self.SAMPLES], None)
            probs = attention_probs(query, key, attn.scale)
            self.store.self_maps.append(probs.mean(dim=1))
        return out


def install_grounding(unet, self_attention: bool = False) -> GroundingStore:
    """Grounding processors on every cross-attention layer (and, with ``self_attention``,
    on the self-attention layers), SDPA elsewhere."""
    store = GroundingStore()

    def processor(name: str):
        if name.endswith("attn2.processor"):
            return GroundingProcessor(store)
        return SelfGroundingProcessor(store) if self_attention else AttnProcessor2_0()

    unet.set_attn_processor({name: processor(name) for name in unet.attn_processors})
    return store


def remove_grounding(unet) -> None:
    """Back to SDPA on every attention layer: the UNet records nothing any more."""
    unet.set_attn_processor(AttnProcessor2_0())


def scene_masks(scene: Scene, max_objects: int = 3) -> torch.Tensor:
    """(max_objects, 16, 16) coverage of each object on the latent grid (zeros if absent)."""
    out = np.zeros((max_objects, MASK_GRID, MASK_GRID), np.float32)
    for i, obj in enumerate(scene.objects):
        cover = object_mask(obj)
        k = cover.shape[0] // MASK_GRID
        out[i] = cover.reshape(MASK_GRID, k, MASK_GRID, k).mean(axis=(1, 3))
    return torch.from_numpy(out)


def token_owners(
    words: list[tuple[str, int]], length: int = 77, kinds: tuple[str, ...] = tuple(WORD_KINDS)
) -> torch.Tensor:
    """(length,) object index of each token, -1 for none or for a word of a kind not in
    ``kinds`` (those words are left free).

    Every word of the shapes vocabulary is one CLIP BPE token, so word k is token k + 1
    (after the start token).
    """
    supervised = frozenset().union(*(WORD_KINDS[kind] for kind in kinds))
    owners = torch.full((length,), -1, dtype=torch.long)
    for k, (word, owner) in enumerate(words[: length - 2]):
        if word in supervised:
            owners[k + 1] = owner
    return owners


def owners_from_timestep(owners: torch.Tensor, t: torch.Tensor, min_t: int) -> torch.Tensor:
    """``owners`` (B, T) with every word of a sample noised to a timestep below ``min_t``
    left free (-1): those samples are judged by the epsilon loss alone."""
    return owners.masked_fill((t < min_t)[:, None], -1)


def grounding_losses(
    maps: list[torch.Tensor], owners: torch.Tensor, masks: torch.Tensor, min_side: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token loss, pixel loss) averaged over the layers at least ``min_side`` locations wide.

    ``maps``: (B, hw, T) per layer; ``owners``: (B, T); ``masks``: (B, K, 16, 16).
    """
    maps = [m for m in maps if m.shape[1] >= min_side**2]
    if not maps:
        raise ValueError(f"no cross-attention layer is {min_side} locations wide or wider")
    supervised = owners >= 0
    if not supervised.any():
        zero = maps[0].sum() * 0
        return zero, zero
    k = masks.shape[1]
    onehot = F.one_hot(owners.clamp(min=0), k).float() * supervised[..., None]  # (B, T, K)
    present = onehot.sum(dim=1) > 0  # (B, K): objects the caption names
    token_terms, pixel_terms = [], []
    for probs in maps:  # (B, hw, T)
        side = int(round(probs.shape[1] ** 0.5))
        cover = F.adaptive_avg_pool2d(masks, side).flatten(2)  # (B, K, hw)
        # Scaled so that the object's best-covered location counts fully: at 4x4 a small
        # object fills at most half a location.
        cover = cover / cover.amax(-1, keepdim=True).clamp(min=1e-6)
        attn = probs.transpose(1, 2)  # (B, T, hw)
        target = torch.einsum("btk,bkh->bth", onehot, cover)
        inside = (attn * target).sum(-1) / (attn.sum(-1) + 1e-8)
        token_terms.append(((1 - inside) ** 2)[supervised].mean())
        per_object = torch.einsum("bth,btk->bkh", attn, onehot).clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(per_object, cover, reduction="none").mean(-1)
        pixel_terms.append(bce[present].mean())
    return torch.stack(token_terms).mean(), torch.stack(pixel_terms).mean()


def scene_regions(masks: torch.Tensor) -> torch.Tensor:
    """(B, hw) region of each latent location: the object covering at least half of it
    most, else K (the background). ``masks``: (B, K, 16, 16)."""
    cover, owner = masks.flatten(2).max(dim=1)
    return torch.where(cover >= 0.5, owner, masks.shape[1])


def self_grounding_loss(self_maps: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """Mean over the recorded layers of ``(1 - share of attention in the own region)^2``,
    object and background locations weighted equally. ``self_maps``: (b, hw, hw), for the
    first b samples of ``masks``."""
    if not self_maps:
        raise ValueError("no self-attention layer at the latent resolution was recorded")
    regions = scene_regions(masks[: self_maps[0].shape[0]])  # (b, hw)
    same = (regions[:, :, None] == regions[:, None, :]).float()  # (b, hw, hw)
    on_object = regions < masks.shape[1]
    terms = []
    for probs in self_maps:
        miss = (1 - (probs * same).sum(-1)) ** 2  # (b, hw)
        parts = [miss[sel].mean() for sel in (on_object, ~on_object) if sel.any()]
        terms.append(torch.stack(parts).mean())
    return torch.stack(terms).mean()
