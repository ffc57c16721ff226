"""Tiny shapes-model architectures for the training tests (``shapes_lab.train --arch``)."""

from __future__ import annotations

import json

TINY_ARCH = json.dumps(
    {
        "vae_channels": [8, 8, 16],
        "vae_groups": 4,
        "unet_channels": [8, 16, 16],
        "unet_groups": 4,
        "unet_heads": 2,
        "text_hidden": 16,
        "text_layers": 1,
        "text_heads": 2,
        "noise_schedule": "linear-v",
    }
)


def tiny_unet_arch() -> dict:
    """TINY_ARCH without its VAE sizes (for runs that take a trained VAE)."""
    return {k: v for k, v in json.loads(TINY_ARCH).items() if not k.startswith("vae_")}


#: The UNet layout with cross-attention at the latent resolution (16x16), as in ``shapes31g``.
CROSS_ATTENTION_AT_16 = {
    "unet_down_blocks": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
}
