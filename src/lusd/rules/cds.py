"""CDS, Contrastive Denoising Score (Nam et al., CVPR 2024): DDS plus a PatchNCE (CUT) loss
that keeps each location's decoder self-attention feature closest to the source's feature at
the same location.

Per iteration: the DDS pass (four branches, guidance 7.5) also yields the reference
features, the outputs of every decoder self-attention layer (``up_blocks.*.attn1``, after
``to_out``) on the source branch (source latent, source prompt); a second pass runs the
target branch alone with gradients, and the PatchNCE loss between its features and the
reference is back-propagated to the latent (never to the UNet's parameters).

The features are read by forward hooks that lusd installs once on the decoder's
self-attention modules; they write into the sink of the CDS pass running in their own
thread (a context variable), so edits in other threads, and other rules, are not seen.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lusd.config import LUSD_LR
from lusd.distill import Distiller
from lusd.errors import ConfigError
from lusd.rules.base import Setting, UpdateRule
from lusd.rules.dds import BASELINE, dds_sample, regional

#: the authors' patch sizes: single locations and 2x2 average-pooled patches
PATCH_SIZES = (1, 2)
#: the authors' fill for the positive pair's place among the negatives (a logit of -10 / tau)
_SAME_LOCATION = -10.0

# ---- the PatchNCE loss ---------------------------------------------------------------------------


def patch_nce_loss(
    reference: torch.Tensor, current: torch.Tensor, temperature: float
) -> torch.Tensor:
    """PatchNCE (CUT, Park et al. 2020) over k sampled locations (k, C), unit vectors:
    mean_i CE([r_i.c_i, r_i.c_j (j != i)] / tau, 0); as the authors do, the i = j place among
    the negatives is kept with the logit -10 / tau. The reference is detached."""
    logits = reference.detach() @ current.T  # (k, k): r_i . c_j
    positive = logits.diagonal().unsqueeze(1)
    same = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    negatives = logits.masked_fill(same, _SAME_LOCATION)
    scores = torch.cat([positive, negatives], dim=1) / temperature
    target = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target)


def patch_features(features: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """One lane's layer output (h*w, C) as unit vectors per location (h'*w', C), after
    ``patch`` x ``patch`` average pooling."""
    height, width = grid
    image = features.float().T.reshape(1, -1, height, width)
    if patch > 1:
        image = F.avg_pool2d(image, patch)
    return F.normalize(image, dim=1).flatten(2)[0].T


def layer_grid(latent_hw: tuple[int, int], tokens: int) -> tuple[int, int]:
    """The (h, w) of a UNet level with ``tokens`` locations: the latent's, halved (rounding
    up, as the UNet's strided convolutions do) until it fits."""
    height, width = latent_hw
    while height * width > tokens:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    if height * width != tokens:
        raise ValueError(f"no UNet level of a {latent_hw} latent has {tokens} locations")
    return height, width


def cds_direction(
    dds: torch.Tensor, nce_gradient: torch.Tensor, weight: float, loss_scale: float = LUSD_LR
) -> torch.Tensor:
    """d_DDS + w / s * grad L_NCE. The authors' SGD step is lr * (s * d_DDS + w * grad L_NCE)
    with the DDS loss scaled by s = 2000 / (h w) and the NCE loss not scaled; our lr holds
    lr * s (the DDS preset), so the NCE gradient is divided by s."""
    return dds + (weight / loss_scale) * nce_gradient


# ---- reading the decoder's self-attention --------------------------------------------------------


@dataclass
class _Sink:
    rows: slice
    features: list[torch.Tensor] = field(default_factory=list)


_SINK: ContextVar[_Sink | None] = ContextVar("lusd_cds_sink", default=None)
_HOOK_LOCK = threading.Lock()


def decoder_self_attention(unet: Any) -> list[torch.nn.Module]:
    """The decoder's self-attention modules (``up_blocks.*.attn1``) in the order they run."""
    from diffusers.models.attention_processor import Attention

    blocks = getattr(unet, "up_blocks", None)
    if not isinstance(blocks, torch.nn.Module):
        return []
    return [
        module
        for name, module in blocks.named_modules()
        if name.split(".")[-1] == "attn1" and isinstance(module, Attention)
    ]


def _keep(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
    sink = _SINK.get()
    if sink is not None:
        sink.features.append(output[sink.rows])


def install_feature_hooks(unet: Any) -> None:
    """Hook every decoder self-attention module of ``unet``, once: a module that carries the
    hook (a second call, or a copy of a hooked UNet) gets none more."""
    with _HOOK_LOCK:
        for module in decoder_self_attention(unet):
            if _keep not in module._forward_hooks.values():
                module.register_forward_hook(_keep)


@contextlib.contextmanager
def collecting(rows: slice) -> Iterator[list[torch.Tensor]]:
    """Within the block, every decoder self-attention output of this thread's UNet passes,
    rows ``rows`` of each, is appended (in layer order) to the list it yields."""
    sink = _Sink(rows)
    token = _SINK.set(sink)
    try:
        yield sink.features
    finally:
        _SINK.reset(token)


# ---- the rule -----------------------------------------------------------------------------------


class CDS(UpdateRule):
    """Per iteration: one no-grad pass of four branches per lane (DDS; it also yields the
    source features), one pass of the target branch with gradients, one backward.

    Follows the authors' code: t in [50, 949) (their ``min(t_max, 1000) - 1``), guidance
    7.5, 256 locations per layer and patch size drawn anew every iteration (here from the
    lane's own generator), SGD lr 0.1 on 2000/(h w) * DDS loss + 3 * NCE loss, 200 steps.
    As in the DDS preset, the DDS loss scale is 2000/4096 (the authors' 512-pixel value)
    at every size."""

    name = "cds"
    summary = "CDS (Nam et al. 2024): DDS plus PatchNCE on decoder self-attention features"
    settings = (
        Setting("cds_weight", 3.0, 0.0, 1e4, "weight of the PatchNCE loss (the authors' w_cut)"),
        Setting("cds_temperature", 0.07, 1e-4, 100.0, "PatchNCE temperature"),
        Setting("cds_patches", 256, 1, 1_000_000, "locations sampled per layer and patch size"),
    )
    presets = {"cds": dict(guidance_scale=7.5, **{**BASELINE, "t_max": 949})}
    needs_empty = True
    rows_per_lane = 4
    unet_passes = 2
    needs_grad = True

    @classmethod
    def check_model(cls, unet: Any) -> None:
        if not decoder_self_attention(unet):
            raise ConfigError(
                "CDS needs self-attention layers in the UNet's decoder (up_blocks.*.attn1); "
                "this model has none"
            )

    def start(self, loop: Distiller) -> None:
        self.check_model(loop.unet)
        install_feature_hooks(loop.unet)

    def step(self, loop: Distiller, step: int, latents: torch.Tensor) -> torch.Tensor:
        count = len(loop.lanes)
        with torch.no_grad(), collecting(slice(count, 2 * count)) as reference:  # source rows
            t, noise, dds = dds_sample(loop, latents, self.config.guidance_scale)
        nce = self._nce_gradient(loop, latents, t, noise, [f.detach() for f in reference])
        direction = cds_direction(dds, nce, self.option("cds_weight"))
        return latents - self.config.lr * regional(direction, loop)

    def _nce_gradient(self, loop, latents, t, noise, reference) -> torch.Tensor:
        """grad of every lane's PatchNCE loss with respect to its latent (lanes, C, h, w)."""
        latent_hw = tuple(latents.shape[-2:])
        grids = [layer_grid(latent_hw, f.shape[1]) for f in reference]
        locations = [self._locations(loop.lanes[i].generator, grids) for i in range(len(latents))]
        with torch.enable_grad():
            target = latents.detach().requires_grad_(True)
            loop.capture([], [])
            with collecting(slice(None)) as current:
                loop.eps([loop.noised(target, t, noise)], t, ["target"], range(len(latents)))
            if len(current) != len(reference):
                raise RuntimeError("CDS read a different number of layers in its two passes")
            temperature = self.option("cds_temperature")
            loss = target.new_zeros(())
            for i, lane_locations in enumerate(locations):
                for ref, cur, grid, per_patch in zip(
                    reference, current, grids, lane_locations, strict=True
                ):
                    for patch, chosen in zip(PATCH_SIZES, per_patch, strict=True):
                        if len(chosen) == 0:  # a level smaller than the patch
                            continue
                        chosen = chosen.to(target.device)
                        r = patch_features(ref[i], grid, patch)[chosen]
                        c = patch_features(cur[i], grid, patch)[chosen]
                        loss = loss + patch_nce_loss(r, c, temperature)
            if not loss.requires_grad:  # no level had a location to compare
                return torch.zeros_like(latents)
            (gradient,) = torch.autograd.grad(loss, target)
        return gradient

    def _locations(self, generator, grids) -> list[list[torch.Tensor]]:
        """Per layer and patch size, the locations one lane samples (shared by its source and
        target features), from the lane's own generator in a fixed order."""
        limit = self.option("cds_patches")
        chosen = []
        for height, width in grids:
            per_patch = []
            for patch in PATCH_SIZES:
                tokens = (height // patch) * (width // patch)
                per_patch.append(torch.randperm(tokens, generator=generator)[: min(limit, tokens)])
            chosen.append(per_patch)
        return chosen
