"""Diffusers SD components -> one original LDM (CompVis) state dict (tests only).

The inverse of diffusers' ``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint`` and
``convert_ldm_clip_checkpoint`` (``diffusers/loaders/single_file_utils.py``), written from the
LDM layout rather than by calling them, so a round trip through ``from_single_file`` checks the
loading path against an independent description of the format.
"""

from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _split(key: str, depth: int) -> tuple[list[str], str]:
    parts = key.split(".")
    return parts[:depth], ".".join(parts[depth:])


def _rename_leaf(rest: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(rest)


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel weights under LDM ``input_blocks/middle_block/output_blocks`` keys."""
    per_level = unet.config.layers_per_block + 1  # resnets (+attention), then a down/up sampler
    out: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        head, rest = _split(key, 1)
        if head[0] in ("down_blocks", "up_blocks"):
            (kind, level, part, index), rest = _split(key, 4)
            level, index = int(level), int(index)
            if kind == "down_blocks":
                first = 1 + level * per_level
                if part == "downsamplers":
                    name = f"input_blocks.{first + per_level - 1}.0.op.{rest.removeprefix('conv.')}"
                elif part == "resnets":
                    name = f"input_blocks.{first + index}.0.{_rename_leaf(rest, _UNET_RESNET)}"
                else:
                    name = f"input_blocks.{first + index}.1.{rest}"
            else:
                first = level * per_level
                if part == "upsamplers":
                    has_attention = hasattr(unet.up_blocks[level], "attentions")
                    slot = 2 if has_attention else 1
                    name = f"output_blocks.{first + per_level - 1}.{slot}.{rest}"
                elif part == "resnets":
                    name = f"output_blocks.{first + index}.0.{_rename_leaf(rest, _UNET_RESNET)}"
                else:
                    name = f"output_blocks.{first + index}.1.{rest}"
        elif head[0] == "mid_block":
            (_, part, index), rest = _split(key, 3)
            if part == "resnets":
                name = f"middle_block.{2 * int(index)}.{_rename_leaf(rest, _UNET_RESNET)}"
            else:
                name = f"middle_block.1.{rest}"
        else:
            name = _rename_leaf(key, _UNET_TOP)
        out[UNET_PREFIX + name] = value.clone()
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """AutoencoderKL weights under LDM ``encoder.down.N.block.M`` keys; attention as 1x1 conv."""
    levels = len(vae.config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        value = value.clone()
        (side, part), rest = _split(key, 2)
        if part in ("down_blocks", "up_blocks"):
            (level, sub), rest = _split(rest, 2)
            ldm_level = int(level) if part == "down_blocks" else levels - 1 - int(level)
            stem = f"{side}.{'down' if part == 'down_blocks' else 'up'}.{ldm_level}"
            if sub == "resnets":
                name = f"{stem}.block.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                sampler = "downsample" if sub == "downsamplers" else "upsample"
                name = f"{stem}.{sampler}.{rest.removeprefix('0.')}"
        elif part == "mid_block":
            (kind, index), rest = _split(rest, 2)
            if kind == "resnets":
                rest = rest.replace("conv_shortcut", "nin_shortcut")
                name = f"{side}.mid.block_{int(index) + 1}.{rest}"
            else:
                name = f"{side}.mid.attn_1.{_rename_leaf(rest, _VAE_ATTENTION)}"
                if value.ndim == 2:  # linear in diffusers, 1x1 conv in LDM
                    value = value[:, :, None, None]
        elif part == "conv_norm_out":
            name = f"{side}.norm_out.{rest}"
        else:  # conv_in, conv_out, quant_conv, post_quant_conv
            name = key
        out[VAE_PREFIX + name] = value
    return out


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights under ``cond_stage_model.transformer.text_model.*`` (SD1.x)."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        out[CLIP_PREFIX + key.removeprefix("text_model.")] = value.clone()
    return out


def ldm_state_dict(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One CompVis-format state dict holding the whole model, like ``v1-5-pruned.safetensors``."""
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_ldm(text_encoder)}
    return {key: value.contiguous() for key, value in state.items()}
