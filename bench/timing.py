"""The harness the cost benches share: one iteration of LUSD (or of another rule) on a UNet,
and a clock that waits for the GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def mask_distiller(unet, predict: Callable, latent: int, gen: torch.Generator):
    """(mask layers, attention store, Distiller) running one LUSD iteration on ``unet``,
    with the mask read from focus tokens 5 and 6 and no filter (every step costs alike)."""
    from lusd.attention import AttentionStore, capturing, choose_mask_layers, refined_maps
    from lusd.config import EditConfig
    from lusd.distill import Distiller

    layers = choose_mask_layers(unet)
    latent_hw = (latent, latent)
    store = AttentionStore(layers, latent_hw=latent_hw)
    focus = torch.tensor([5, 6])

    def predict_capturing(*args):
        with capturing(store):
            return predict(*args)

    distiller = Distiller(
        predict_capturing,
        torch.linspace(0.9991, 0.0047, 1000),
        EditConfig(num_steps=1, use_filter=False),
        gen,
        capture=lambda rows, lanes: store.reset(rows, [focus] * len(rows)),
        read_masks=lambda: refined_maps(store, latent_hw, layers) if store.active else None,
    )
    return layers, store, distiller


def rule_distiller(unet, predict: Callable, preset: str, gen: torch.Generator):
    """A Distiller running one iteration of ``preset``'s rule (e.g. "cds", "pds") on
    ``unet`` with default attention; CDS reads the UNet's layers, so it is passed on."""
    from lusd.config import preset_config
    from lusd.distill import Distiller

    config = preset_config(preset, num_steps=1)
    return Distiller(predict, torch.linspace(0.9991, 0.0047, 1000), config, gen, unet=unet)


def use_attention(unet, variant: str, layers, store) -> None:
    """diffusers' default SDPA everywhere ("bare") or lusd's mask capture ("lusd")."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from lusd.attention import install_capture

    if variant == "bare":
        unet.set_attn_processor(AttnProcessor2_0())
    elif variant == "lusd":
        install_capture(unet)
    else:
        raise ValueError(f"unknown variant {variant!r}")


def timed(device: str, run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``run()``, the GPU's work included."""
    if device == "cuda":
        torch.cuda.synchronize()
    start, start_cpu = time.perf_counter(), time.process_time()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu
