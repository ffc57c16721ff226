"""The two training stages of the shapes model (VAE; UNet + text encoder)."""

from __future__ import annotations

import argparse
import copy
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lusd.shapes.data import batch_rng, image_batch, to_tensor
from lusd.shapes.grounding import (
    grounding_losses,
    install_grounding,
    owners_from_timestep,
    remove_grounding,
    scene_masks,
    token_owners,
)
from lusd.shapes.models import Arch, build_scheduler, build_text_encoder, build_unet, build_vae
from lusd.shapes.train import Run, lr_at, save_atomic
from lusd.shapes.world import Obj, Scene

log = logging.getLogger(__name__)


def _bar(run: Run, args: argparse.Namespace) -> tqdm:
    return tqdm(
        initial=run.step,
        total=None,
        desc=run.spec.name,
        disable=args.no_progress,
        mininterval=10,
        unit="step",
    )


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def train_vae(run: Run, arch: Arch, args: argparse.Namespace) -> None:
    """AutoencoderKL with L1 + MSE reconstruction and a small KL term."""
    if run.done_path.exists():
        log.info("vae: already done")
        return
    torch.manual_seed(args.seed)
    vae = build_vae(arch)
    opt = torch.optim.AdamW(vae.parameters(), lr=run.spec.lr, weight_decay=0.0)
    state = run.resume()
    if state:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["torch_rng"])
    log.info("vae: %.2fM params", sum(p.numel() for p in vae.parameters()) / 1e6)

    def make_state():
        return {
            "model": vae.state_dict(),
            "opt": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    bar = _bar(run, args)
    vae.train()
    while not run.finished():
        _set_lr(opt, lr_at(run.spec, run.step, run.progress()))
        # three objects per scene: more edges per image, which is what the VAE must learn
        x = image_batch(batch_rng(args.seed, "vae", run.step), run.spec.batch, n_objects=3)
        weight = _object_weight(x, args.vae_object_weight)
        if args.vae_crop:  # fully convolutional: train on crops, 4x cheaper at 32 px
            rng = batch_rng(args.seed, "vae-crop", run.step)
            both = _random_crops(torch.cat([x, weight], 1), args.vae_crop, rng)
            x, weight = both[:, :3], both[:, 3:]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        err = rec - x
        l1, l2 = (weight * err.abs()).mean(), (weight * err.square()).mean()
        kl = post.kl().mean()
        loss = l1 + l2 + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        run.step += 1
        bar.update(1)
        if run.step % 25 == 0 or run.step == 1:
            run.record(
                {
                    "loss": loss.item(),
                    "l1": l1.item(),
                    "mse": l2.item(),
                    "kl": kl.item(),
                    "lr": opt.param_groups[0]["lr"],
                }
            )
            bar.set_postfix(l1=f"{l1.item():.4f}", refresh=False)
        run.maybe_checkpoint(make_state)
    run.maybe_checkpoint(make_state, force=True)
    bar.close()
    run.done_path.write_text(f"{run.step}\n")
    log.info("vae: done after %d steps, %.1f min", run.step, run.now() / 60)


def take_vae(run: Run, arch: Arch, source: Path) -> Arch:
    """Complete the VAE stage with a trained AutoencoderKL instead of training one.

    ``source`` is a model folder with a ``vae/`` (such as the shipped model) or the VAE's
    own folder. Returns ``arch`` with the source's VAE sizes, the ones the stage now holds.
    """
    from diffusers import AutoencoderKL

    from lusd.errors import ModelLoadError

    if run.done_path.exists():
        log.info("vae: already done")
        return arch
    folder = source / "vae" if (source / "vae" / "config.json").is_file() else source
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{source}: no VAE here (neither config.json nor vae/config.json)")
    try:
        trained = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError) as error:
        raise ModelLoadError(f"{folder}: not a loadable AutoencoderKL ({error})") from None
    cfg = trained.config
    sized = replace(
        arch,
        vae_channels=tuple(cfg.block_out_channels),
        vae_layers=cfg.layers_per_block,
        vae_groups=cfg.norm_num_groups,
    )
    vae = build_vae(sized)
    try:
        if len(cfg.block_out_channels) != len(Arch().vae_channels):  # f = 4: 16x16 latents
            raise RuntimeError
        vae.load_state_dict(trained.state_dict())
    except RuntimeError:
        raise ModelLoadError(
            f"{folder}: this VAE does not have the shapes model's layout (64x64x3 -> 16x16x4, "
            "no mid-block attention); train one with --stages vae"
        ) from None
    save_atomic({"model": vae.state_dict(), "step": 0, "elapsed": 0.0}, run.ckpt_path)
    run.done_path.write_text("0\n")
    log.info("vae: taken from %s", folder)
    return sized


def _object_weight(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Per-pixel loss weight: ``factor`` on pixels that differ from the scene's background
    (the median of the top row), 1 elsewhere; objects are a small share of the pixels and
    their colours are what the VAE gets wrong first."""
    bg = x[:, :, 0, :].median(dim=-1).values[:, :, None, None]
    obj = ((x - bg).abs().sum(1, keepdim=True) > 0.05).float()
    return 1.0 + (factor - 1.0) * obj


def _random_crops(x: torch.Tensor, size: int, rng) -> torch.Tensor:
    """One ``size`` crop per image at an offset on the latent grid (multiples of 4)."""
    top = rng.integers(0, (x.shape[-1] - size) // 4 + 1, size=(x.shape[0], 2)) * 4
    crops = [im[:, y : y + size, x0 : x0 + size] for im, (y, x0) in zip(x, top, strict=True)]
    return torch.stack(crops)


def load_vae(run_dir, arch: Arch):
    vae = build_vae(arch)
    state = torch.load(run_dir / "vae" / "ckpt.pt", map_location="cpu", weights_only=False)
    vae.load_state_dict(state["model"])
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def latent_scale(vae, seed: int, n: int = 512) -> float:
    """1 / std of the VAE's latent means over ``n`` rendered scenes (SD's scaling_factor)."""
    x = image_batch(batch_rng(seed, "scale", 0), n)
    z = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(64)])
    return float(1.0 / z.std())


class LatentCache:
    """Freshly rendered scenes, VAE-encoded once per block and each used ``REUSE`` times.

    Encoding a 64x64 image costs about as much as a UNet training step on its latent, so
    every block of ``BLOCK`` steps renders ``BLOCK * batch / REUSE`` new scenes, encodes
    them once (mean and std), and each step draws its batch from them with a fresh
    posterior sample and a fresh training caption. Everything is a function of the step.
    Each batch also carries which object every caption token describes and the objects'
    coverage masks, for the grounding loss (``lusd.shapes.grounding``).

    Curriculum (docs/shapes-model.md, "Why the model ignores position words"): during
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
    latent. It was not enough for the layout (docs/shapes-model.md, "Why the model
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
    model = torch.nn.ModuleDict({"unet": unet, "text": text})
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=run.spec.lr, weight_decay=0.01, fused=True)
    state = run.resume()
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
    grounding = None
    bar = _bar(run, args)
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
        if ground_words and grounding is None:
            grounding = install_grounding(unet)  # after the EMA copy: only the trained UNet records
        elif grounding is not None and not ground_words:
            remove_grounding(unet)
            grounding = None
        _set_lr(opt, lr_at(run.spec, run.step, run.progress()))
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
            grounding.maps.clear()
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        w, target = _loss_weight_and_target(sched, snr[t], z, noise, t)
        per = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (w * per).mean()
        if grounding is not None:
            token_loss, pixel_loss = grounding_losses(
                grounding.maps, owners, masks, args.ground_min_side
            )
            loss = loss + args.ground_token * token_loss + args.ground_pixel * pixel_loss
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
                off = grounding is None
                record.update(
                    token_loss=math.nan if off else token_loss.item(),
                    pixel_loss=math.nan if off else pixel_loss.item(),
                )
            run.record(record)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        run.maybe_checkpoint(make_state)
    run.maybe_checkpoint(make_state, force=True)
    bar.close()
    run.done_path.write_text(f"{run.step}\n")
    log.info("unet: done after %d steps, %.1f min", run.step, run.now() / 60)
