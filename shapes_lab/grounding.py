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
        probs = (query @ key.transpose(-1, -2) * attn.scale).softmax(dim=-1)
        self.store.maps.append(probs.mean(dim=1))
        return merge_heads_out(attn, probs @ value, hidden_states)


def install_grounding(unet) -> GroundingStore:
    """Grounding processors on every cross-attention layer, SDPA elsewhere."""
    store = GroundingStore()
    unet.set_attn_processor(
        {
            name: GroundingProcessor(store)
            if name.endswith("attn2.processor")
            else AttnProcessor2_0()
            for name in unet.attn_processors
        }
    )
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
