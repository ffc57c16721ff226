"""Stage ``vae`` of the shapes model: train the AutoencoderKL, or take a trained one."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import torch

from shapes_lab.data import batch_rng, image_batch
from shapes_lab.models import Arch, build_vae
from shapes_lab.training_run import Run, save_atomic

log = logging.getLogger(__name__)


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

    bar = run.progress_bar(hidden=args.no_progress)
    vae.train()
    while not run.finished():
        run.set_lr(opt)
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
    run.finish(make_state, bar)


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
