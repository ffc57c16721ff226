"""Start the UNet stage from a trained model's UNet and text encoder (``--unet-from``).

The new UNet may carry attention blocks the source has not (cross-attention added at a
finer level, docs/shapes-model.md, "Cross-attention added to a trained model"): they start
as the identity (zero output projection), so the warm-started model computes exactly what
the source computed, and training only adds to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lusd.errors import ModelLoadError

log = logging.getLogger(__name__)


def warm_start(unet: torch.nn.Module, text: torch.nn.Module, source: Path) -> list[str]:
    """Load ``source``'s UNet and text encoder into ``unet`` and ``text``; returns the
    names of the UNet's attention blocks the source did not have (zero-initialised)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from transformers import CLIPTextModel

    try:
        src_unet = UNet2DConditionModel.from_pretrained(source / "unet", torch_dtype=torch.float32)
        src_text = CLIPTextModel.from_pretrained(source / "text_encoder", torch_dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{source}: no trained UNet and text encoder here ({error})") from None
    try:
        text.load_state_dict(src_text.state_dict())
    except RuntimeError:
        raise ModelLoadError(f"{source}: its text encoder has other sizes than --arch's") from None
    src = src_unet.state_dict()
    own = unet.state_dict()
    foreign = [k for k, v in src.items() if k not in own or own[k].shape != v.shape]
    if foreign:
        raise ModelLoadError(
            f"{source}: its UNet does not fit the new one ({len(foreign)} tensors differ, "
            f"e.g. {foreign[0]}); only attention blocks may be added"
        )
    added = [
        name
        for name, module in unet.named_modules()
        if isinstance(module, Transformer2DModel) and not any(k.startswith(name + ".") for k in src)
    ]
    rest = [k for k in own if k not in src and not any(k.startswith(a + ".") for a in added)]
    if rest:
        raise ModelLoadError(f"{source}: the new UNet has more than attention blocks ({rest[0]})")
    unet.load_state_dict(src, strict=False)
    with torch.no_grad():
        for name in added:
            proj = unet.get_submodule(name).proj_out
            proj.weight.zero_()
            proj.bias.zero_()
    log.info("unet: warm start from %s; new attention blocks: %s", source, ", ".join(added))
    return added
