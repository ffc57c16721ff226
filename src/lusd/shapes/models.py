"""Architectures of the shapes-world model: a tiny SD (VAE f=4, UNet, CLIP text encoder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Arch:
    """Sizes of the three networks (the training recipe's model part)."""

    vae_channels: tuple[int, ...] = (32, 64, 64)
    vae_layers: int = 1
    vae_groups: int = 16
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_layers: int = 1
    unet_heads: int = 4
    unet_groups: int = 16
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        for k in ("vae_channels", "unet_channels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def build_vae(arch: Arch):
    """AutoencoderKL 64x64x3 -> 16x16x4 (two downsamplings), no mid-block attention."""
    from diffusers import AutoencoderKL

    n = len(arch.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=arch.vae_channels,
        layers_per_block=arch.vae_layers,
        latent_channels=4,
        norm_num_groups=arch.vae_groups,
        sample_size=64,
        mid_block_add_attention=False,
    )


def build_unet(arch: Arch):
    """UNet on 16x16x4 latents: plain 16x16 level, cross-attention at 8x8 and 4x4 + mid."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=arch.unet_channels,
        layers_per_block=arch.unet_layers,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.unet_heads,
        norm_num_groups=arch.unet_groups,
    )


def build_text_encoder(arch: Arch):
    """A small CLIPTextModel over the full CLIP vocabulary (49408 tokens, 77 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=arch.text_hidden,
            intermediate_size=4 * arch.text_hidden,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def build_scheduler():
    """The SD1.x noise schedule (scaled_linear 0.00085-0.012, 1000 steps, epsilon)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type="epsilon",
        steps_offset=1,
    )
