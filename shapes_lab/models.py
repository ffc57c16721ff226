"""Architectures of the shapes-world model: a tiny SD (VAE f=4, UNet, CLIP text encoder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Arch:
    """Sizes of the three networks (the training recipe's model part); the defaults are
    the shipped model's."""

    vae_channels: tuple[int, ...] = (32, 32, 64)
    vae_layers: int = 1
    vae_groups: int = 16
    unet_channels: tuple[int, ...] = (64, 64, 128)
    unet_layers: int = 1
    unet_heads: int = 4
    unet_groups: int = 16
    #: The UNet's down blocks from the 16x16 level down; the up blocks mirror them. The
    #: recipe's first run has cross-attention at 8x8 and 4x4 only; the shipped model adds
    #: it at 16x16 (``SHIPPED_LAYOUT``, docs/shapes-model.md, "Cross-attention added to a
    #: trained model").
    unet_down_blocks: tuple[str, ...] = (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    )
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    #: "sd": SD1.x's schedule with epsilon prediction (the shipped model); "linear" and
    #: "linear-v": DDPM's linear schedule with epsilon / v-prediction (experiments, see
    #: build_scheduler).
    noise_schedule: str = "sd"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        for k in ("vae_channels", "unet_channels", "unet_down_blocks"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


#: ``--arch`` of the recipe's second run: the shipped model's UNet layout, cross-attention
#: at every level, so that the LUSD mask reads 16x16 maps (``mask_factors``).
SHIPPED_LAYOUT = {"unet_down_blocks": ["CrossAttnDownBlock2D"] * 3}


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
    """UNet on 16x16x4 latents with ``arch.unet_down_blocks`` and their mirror image."""
    from diffusers import UNet2DConditionModel

    up_blocks = tuple(b.replace("Down", "Up") for b in reversed(arch.unet_down_blocks))
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=arch.unet_channels,
        layers_per_block=arch.unet_layers,
        down_block_types=arch.unet_down_blocks,
        up_block_types=up_blocks,
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.unet_heads,
        norm_num_groups=arch.unet_groups,
    )


def mask_factors(arch: Arch) -> dict[str, int]:
    """The LUSD mask's levels for this UNet (EditConfig fields): cross- and self-attention at
    the finest level that has them, where an object spans the most cells (SD1.5's latent/4
    and latent/2 are its 16x16 and 32x32 maps, on which a typical object spans several
    cells; the shapes model's finest map is 16x16, on which an 11-18 px object spans 3-4.5)."""
    blocks = enumerate(arch.unet_down_blocks)
    finest = next((i for i, b in blocks if b.startswith("CrossAttn")), 0)
    return {"mask_cross_factor": 2**finest, "mask_self_factor": 2**finest}


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


NOISE_SCHEDULES: dict[str, dict[str, Any]] = {
    "sd": dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               prediction_type="epsilon"),
    "linear": dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                   prediction_type="epsilon"),
    "linear-v": dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                     prediction_type="v_prediction"),
}  # fmt: skip


def build_scheduler(arch: Arch | None = None):
    """The DDPM scheduler of ``arch.noise_schedule`` (1000 steps; default SD1.x's).

    "linear" and "linear-v" are the experiments of bench/shapes-experiments.md ("Why the model
    ignores position words"): SD1.x's schedule leaves 6.8% of the signal at t = 999,
    enough on a 16x16 latent for the UNet to read the layout from its input at every
    step; DDPM's linear schedule keeps 0.6%. And where the layout is hidden (low SNR) an
    epsilon loss barely rewards getting it right (the gain scales with the SNR);
    v-prediction weights those steps like an x0 loss.
    """

    from diffusers import DDPMScheduler

    from lusd.errors import ConfigError

    name = (arch or Arch()).noise_schedule
    if name not in NOISE_SCHEDULES:
        raise ConfigError(f"unknown noise_schedule {name!r}: one of {', '.join(NOISE_SCHEDULES)}")
    return DDPMScheduler(
        num_train_timesteps=1000, clip_sample=False, steps_offset=1, **NOISE_SCHEDULES[name]
    )
