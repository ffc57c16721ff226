"""Stage ``unet`` of the shapes model: the UNet and the CLIP text encoder, jointly, on the
frozen VAE's latents."""

from __future__ import annotations

import argparse
import copy
import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from lusd.shapes.world import Obj, Scene
from shapes_lab.data import batch_rng, to_tensor
from shapes_lab.grounding import (
    grounding_losses,
    install_grounding,
    owners_from_timestep,
    remove_grounding,
    scene_masks,
    self_grounding_loss,
    token_owners,
)
from shapes_lab.models import Arch, build_scheduler, build_text_encoder, build_unet
from shapes_lab.training_run import Run
from shapes_lab.vae_stage import latent_scale, load_vae
from shapes_lab.warm_start import warm_start

log = logging.getLogger(__name__)


class LatentCache:
    """Freshly rendered scenes, VAE-encoded once per block and each used ``REUSE`` times.

    Encoding a 64x64 image costs about as much as a UNet training step on its latent, so
    every block of ``BLOCK`` steps renders ``BLOCK * batch / REUSE`` new scenes, encodes
    them once (mean and std), and each step draws its batch from them with a fresh
    posterior sample and a fresh training caption. Everything is a function of the step.
    Each batch also carries which object every caption token describes and the objects'
    coverage masks, for the grounding loss (``shapes_lab.grounding``).

    Curriculum (bench/shapes-experiments.md, "Why the model ignores position words"): during
    the steps ``position_steps`` = (start, end) every scene is one large red circle on
    white in a random cell and every caption names its position. Position is then the
    only thing to learn (the grounding loss teaches it without a curriculum).
    """

    BLOCK, REUSE = 8, 4

    def __init__(
        self,
        vae,
        scale: float,
        seed: int,
        batch: int,
        p_uncond: float = 0.1,
        position_steps: tuple[int, int] = (0, 0),
    ) -> None:
        self.vae, self.scale, self.seed, self.batch = vae, scale, seed, batch
        self.p_uncond, self.position_steps = p_uncond, position_steps
        self._block = -1
        self._scenes: list = []
        self._mean = self._std = torch.empty(0)

    @torch.no_grad()
    def _fill(self, block: int) -> None:
        from lusd.shapes.world import render, sample_scene

        rng = batch_rng(self.seed, "unet-scenes", block)
        n = self.BLOCK * self.batch // self.REUSE
        scene = position_drill_scene if self.in_curriculum(block * self.BLOCK) else sample_scene
        self._scenes = [scene(rng) for _ in range(n)]
        self._masks = torch.stack([scene_masks(s) for s in self._scenes])
        x = to_tensor([render(s) for s in self._scenes])
        dist = self.vae.encode(x).latent_dist
        self._mean, self._std = dist.mean, dist.std
        self._block = block

    def in_curriculum(self, step: int) -> bool:
        """Whether ``step``'s block belongs to the red-circle phase."""
        start, end = self.position_steps
        return start <= step // self.BLOCK * self.BLOCK < end

    def starts_phase(self, step: int) -> bool:
        """Whether the red-circle phase begins or ends at ``step``."""
        return step > 0 and self.in_curriculum(step) != self.in_curriculum(step - 1)

    def get(self, step: int, ground_words: tuple[str, ...] = ()) -> TrainBatch:
        """The batch of ``step``; its token owners cover the words of ``ground_words``."""
        from lusd.shapes.world import training_caption_words, words_text

        if step // self.BLOCK != self._block:
            self._fill(step // self.BLOCK)
        rng = batch_rng(self.seed, "unet", step)
        idx = rng.choice(len(self._scenes), size=self.batch, replace=False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        mean, std = self._mean[idx], self._std[idx]
        z = (mean + std * torch.randn(mean.shape, generator=gen)) * self.scale
        always_position = {"p_position": 0.0} if self.in_curriculum(step) else {}
        words = [
            training_caption_words(self._scenes[i], rng, **always_position)
            if rng.random() >= self.p_uncond
            else []
            for i in idx
        ]
        return TrainBatch(
            z,
            [words_text(ws) for ws in words],
            torch.stack([token_owners(ws, kinds=ground_words) for ws in words]),
            self._masks[idx],
        )


class TrainBatch(NamedTuple):
    """Latents, captions, each token's object (-1: none) and the objects' 16x16 coverage."""

    latents: torch.Tensor
    captions: list[str]
    owners: torch.Tensor
    masks: torch.Tensor


def position_drill_scene(rng) -> Scene:
    """One large red circle on white in a random cell: only its position varies."""
    return Scene("white", (Obj("red", "circle", "large", int(rng.integers(9))),))


def _training_noise(z: torch.Tensor, strength: float) -> torch.Tensor:
    """Gaussian noise plus low-frequency parts (a per-channel offset and a 3x3-grid field).

    The "offset noise" remedy, extended to the 3x3 layout scale: the model should read
    background and layout from the caption, not from what survives of them in a noisy
    latent. It was not enough for the layout (bench/shapes-experiments.md, "Why the model
    ignores position words").
    """
    noise = torch.randn_like(z)
    if strength > 0:
        b, c, h, w = z.shape
        noise = noise + strength * torch.randn(b, c, 1, 1)
        grid = torch.randn(b, c, 3, 3)
        noise = noise + strength * F.interpolate(grid, size=(h, w), mode="bilinear")
    return noise


def _loss_weight_and_target(sched, snr: torch.Tensor, z, noise, t):
    """Per-sample loss weight and regression target of the scheduler's prediction type.

    Min-SNR(5) only at the high-SNR end: epsilon keeps weight 1 below SNR 5 (as in the
    Min-SNR paper); v keeps its own weight, which at low SNR equals an x0 loss, so the
    steps where the caption alone decides the layout count fully.
    """
    if sched.config.prediction_type == "v_prediction":
        w = (1 + torch.clamp(snr, max=5.0)) / (1 + snr)
        return w.float(), sched.get_velocity(z, noise, t)
    return (torch.clamp(snr, max=5.0) / snr).float(), noise


def ground_words_at(args: argparse.Namespace, step: int) -> tuple[str, ...]:
    """The word kinds the grounding supervises at ``step`` (empty: no grounding)."""
    if not (args.ground_token or args.ground_pixel) or step < args.ground_from:
        return ()
    if args.ground_until and step >= args.ground_until:
        return args.ground_late_words
    return args.ground_words


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)


def train_unet(run: Run, arch: Arch, args: argparse.Namespace) -> None:
    """UNet + CLIP text encoder on frozen-VAE latents (scheduler's prediction type), CFG dropout."""
    if run.done_path.exists():
        log.info("unet: already done")
        return
    from lusd.tokenizer import clip_tokenizer

    vae = load_vae(run.dir.parent, arch)
    sf_path = run.dir / "scaling_factor.txt"
    if not sf_path.exists():
        sf_path.write_text(f"{latent_scale(vae, args.seed):.6f}\n")
    sf = float(sf_path.read_text())
    tok = clip_tokenizer()
    sched = build_scheduler(arch)
    abar = sched.alphas_cumprod
    snr = abar / (1 - abar)
    torch.manual_seed(args.seed)
    # channels_last: a training step ~15% faster on these CPUs (docs/shapes-model.md)
    unet = build_unet(arch).to(memory_format=torch.channels_last)
    text = build_text_encoder(arch)
    state = run.resume()
    if args.unet_from is not None and not state:  # a resumed run has its own weights
        warm_start(unet, text, args.unet_from)
    model = torch.nn.ModuleDict({"unet": unet, "text": text})
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=run.spec.lr, weight_decay=0.01, fused=True)
    if state:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["torch_rng"])
    log.info(
        "unet: %.2fM params, text encoder %.2fM, scaling factor %.4f",
        sum(p.numel() for p in unet.parameters()) / 1e6,
        sum(p.numel() for p in text.parameters()) / 1e6,
        sf,
    )

    def make_state():
        return {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    grounded = bool(args.ground_token or args.ground_pixel)
    grounds_self = args.ground_self > 0
    grounding = None
    bar = run.progress_bar(hidden=args.no_progress)
    model.train()
    cache = LatentCache(
        vae,
        sf,
        args.seed,
        run.spec.batch,
        position_steps=args.position_steps,
    )
    while not run.finished():
        if cache.starts_phase(run.step):
            # Each phase starts with fresh Adam moments: the red circles' gradients are far
            # smaller than the mix's, and moments carried over would shrink their steps.
            opt.state.clear()
        ground_words = ground_words_at(args, run.step)
        records = bool(ground_words) or grounds_self
        if records and grounding is None:
            # after the EMA copy: only the trained UNet records
            grounding = install_grounding(unet, self_attention=grounds_self)
        elif grounding is not None and not records:
            remove_grounding(unet)
            grounding = None
        run.set_lr(opt)
        z, caps, owners, masks = cache.get(run.step, ground_words)
        ids = tok(
            caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        t = torch.randint(0, 1000, (z.shape[0],))
        owners = owners_from_timestep(owners, t, args.ground_min_t)
        # Plain noise in the red-circle phase: low-frequency noise there hinders the
        # position mapping (docs/shapes-model.md).
        noise = _training_noise(z, 0.0 if cache.in_curriculum(run.step) else args.offset_noise)
        zt = sched.add_noise(z, noise, t).contiguous(memory_format=torch.channels_last)
        cond = text(ids)[0]
        if grounding is not None:
            grounding.clear()
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        w, target = _loss_weight_and_target(sched, snr[t], z, noise, t)
        per = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (w * per).mean()
        if ground_words:
            token_loss, pixel_loss = grounding_losses(
                grounding.maps, owners, masks, args.ground_min_side
            )
            loss = loss + args.ground_token * token_loss + args.ground_pixel * pixel_loss
        if grounds_self:
            self_loss = self_grounding_loss(grounding.self_maps, masks)
            loss = loss + args.ground_self * self_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run.step += 1
        _ema_update(ema, model, min(0.998, (1 + run.step) / (10 + run.step)))
        bar.update(1)
        if run.step % 25 == 0 or run.step == 1:
            record = {
                "loss": loss.item(),
                "mse": per.mean().item(),
                "lr": opt.param_groups[0]["lr"],
            }
            if grounded:  # nan for the steps outside the grounding window
                off = not ground_words
                record.update(
                    token_loss=math.nan if off else token_loss.item(),
                    pixel_loss=math.nan if off else pixel_loss.item(),
                )
            if grounds_self:
                record["self_loss"] = self_loss.item()
            run.record(record)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        run.maybe_checkpoint(make_state)
    run.finish(make_state, bar)
