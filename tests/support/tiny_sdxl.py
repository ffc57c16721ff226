"""Tiny random-weight SDXL components in the exact diffusers SDXL layout (tests only).

Like ``stabilityai/stable-diffusion-xl-base-1.0``: a UNet whose first level has no attention
(attention at latent/2 and latent/4 only, deeper transformers further down), the
``text_time`` added embedding, two CLIP text encoders (the second with a projection, whose
pooled output conditions the UNet), two tokenizers (the second pads with "!"), a VAE with
``force_upcast`` and SDXL's scaling factor, and an Euler scheduler. The two encoders differ
in width, as CLIP ViT-L and OpenCLIP bigG do, which a single-file checkpoint relies on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from lusd.testing.tiny import tiny_vae
from lusd.tokenizer import clip_tokenizer

WIDTH_1, WIDTH_2, PROJECTION = 16, 24, 8
TIME_EMBED = 8


def _clip_config(width: int, **extra) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=3,
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="gelu",
        **extra,
    )


def tiny_sdxl_components() -> dict:
    """UNet latent 16 (native 32 px with the factor-2 VAE), attention at latent/2 and /4."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 3),
        attention_head_dim=(2, 2, 4),
        use_linear_projection=True,
        cross_attention_dim=WIDTH_1 + WIDTH_2,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=6 * TIME_EMBED + PROJECTION,
        norm_num_groups=4,
    )
    vae = tiny_vae(scaling_factor=0.13025, force_upcast=True)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config(WIDTH_1))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(WIDTH_2, projection_dim=PROJECTION))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    tokenizer_2 = clip_tokenizer()
    tokenizer_2.pad_token = "!"
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=tokenizer_2,
        scheduler=scheduler,
    )


def save_tiny_sdxl(folder: Path) -> Path:
    """Write the folder exactly as diffusers' StableDiffusionXLPipeline saves it."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        **tiny_sdxl_components(),
        image_encoder=None,
        feature_extractor=None,
        add_watermarker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder
