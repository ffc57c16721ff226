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
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's text_time embedding
    "add_embedding.linear_2": "label_emb.0.2",
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


def clip_to_ldm(text_encoder, prefix: str = CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights under ``cond_stage_model.transformer.text_model.*`` (SD1.x)."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        out[prefix + key.removeprefix("text_model.")] = value.clone()
    return out


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_to_ldm(text_encoder, prefix: str = SDXL_OPEN_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection weights in OpenCLIP's layout (SDXL's second encoder).

    q/k/v become one ``attn.in_proj_weight``; the projection is stored transposed.
    """
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T,
    }
    state.pop("embeddings.position_ids", None)
    for layer in range(text_encoder.config.num_hidden_layers):
        stem = f"encoder.layers.{layer}."
        block = f"transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{stem}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(qkv)
            for new, old in _OPEN_CLIP_LAYER.items():
                out[f"{block}{old}.{kind}"] = state.pop(f"{stem}{new}.{kind}")
    if state:
        raise KeyError(f"unconverted text encoder weights: {sorted(state)[:3]}")
    return {prefix + key: value.clone() for key, value in out.items()}


def sdxl_state_dict(unet, vae, text_encoder, text_encoder_2) -> dict[str, torch.Tensor]:
    """One SDXL single-file state dict, like ``sd_xl_base_1.0.safetensors``."""
    state = {
        **unet_to_ldm(unet),
        **vae_to_ldm(vae),
        **clip_to_ldm(text_encoder, SDXL_CLIP_PREFIX),
        **open_clip_to_ldm(text_encoder_2),
    }
    return {key: value.contiguous() for key, value in state.items()}


def ldm_state_dict(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One CompVis-format state dict holding the whole model, like ``v1-5-pruned.safetensors``."""
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_ldm(text_encoder)}
    return {key: value.contiguous() for key, value in state.items()}
