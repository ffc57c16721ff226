"""Tiny random-weight SD components in the exact layouts, for tests and benchmarks.

Seeded, so the same call gives the same weights; :func:`save_tiny_model` writes them as a
diffusers folder through the real save path. Random weights: the edits are noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from lusd.tokenizer import clip_tokenizer


def tiny_vae(**config) -> AutoencoderKL:
    """Seeded random VAE in SD's layout, factor 2 (``config`` adds to or overrides it)."""
    torch.manual_seed(0)
    return AutoencoderKL(
        **{
            "block_out_channels": [8, 16],
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2,
            "latent_channels": 4,
            "norm_num_groups": 4,
            "sample_size": 32,
            **config,
        }
    )


def tiny_components(prediction_type: str = "epsilon") -> dict:
    """UNet with attention at latent, latent/2 and latent/4 (like SD), VAE factor 2."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type=prediction_type,
    )
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        scheduler=scheduler,
    )


def save_tiny_model(folder: Path, prediction_type: str = "epsilon") -> Path:
    """Write a diffusers-format SD folder (model_index.json + component folders)."""
    from lusd.pipeline import LUSDPipeline

    LUSDPipeline(**tiny_components(prediction_type)).save_pretrained(str(folder))
    return folder
