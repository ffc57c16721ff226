"""Write the trained shapes model as a diffusers Stable Diffusion folder (safetensors)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from lusd.shapes import SHAPES_MODEL_DIR
from shapes_lab.models import (
    Arch,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    mask_factors,
)

log = logging.getLogger(__name__)

#: LUSD defaults of a new export (the last tuned values; re-tune on the new model with
#: ``python -m shapes_lab.tune``, docs/shapes-model.md). The mask's levels come from the
#: architecture (``mask_factors``).
DEFAULT_LUSD_CONFIG: dict[str, float | int] = {
    "num_steps": 60,
    "scale_high": 0.4,
    "scale_low": 0.04,
    "lambda_reg": 0.1,
    "t_min": 200,
}

_TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")
#: The model card (licence front-matter, read by ``lusd info``); kept across re-exports.
MODEL_CARD = SHAPES_MODEL_DIR / "README.md"


def load_trained(work: Path, arch: Arch, use_ema: bool = True):
    """(vae, unet, text_encoder, scaling_factor) from the work folder's checkpoints."""
    vae = build_vae(arch)
    vae.load_state_dict(torch.load(work / "vae" / "ckpt.pt", weights_only=False)["model"])
    state = torch.load(work / "unet" / "ckpt.pt", weights_only=False)
    model = torch.nn.ModuleDict({"unet": build_unet(arch), "text": build_text_encoder(arch)})
    model.load_state_dict(state["ema" if use_ema else "model"])
    sf = float((work / "unet" / "scaling_factor.txt").read_text())
    return vae, model["unet"], model["text"], sf


def export_model(
    work: Path, arch: Arch, out: Path, fp16: bool = True, lusd_config: dict | None = None
) -> Path:
    """Save the five components, model_index.json, lusd_config.json and the model card."""
    from diffusers import StableDiffusionPipeline

    from lusd.tokenizer import TOKENIZER_DIR, clip_tokenizer

    vae, unet, text, sf = load_trained(work, arch)
    vae.register_to_config(scaling_factor=sf)
    dtype = torch.float16 if fp16 else torch.float32
    pipe = StableDiffusionPipeline(
        vae=vae.to(dtype).eval(),
        text_encoder=text.to(dtype).eval(),
        tokenizer=clip_tokenizer(),
        unet=unet.to(dtype).eval(),
        scheduler=build_scheduler(arch),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".shapes-model-", dir=out.parent))
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    for extra in (tmp / "tokenizer").iterdir():  # keep exactly the shipped tokenizer files
        if extra.name not in _TOKENIZER_FILES:
            extra.unlink()
    for name in _TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, tmp / "tokenizer" / name)
    cfg = dict(DEFAULT_LUSD_CONFIG if lusd_config is None else lusd_config)
    if lusd_config is None:
        cfg.update(mask_factors(arch))
    (tmp / "lusd_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if MODEL_CARD.is_file():
        shutil.copyfile(MODEL_CARD, tmp / "README.md")
    if out.exists():
        keep = {"lusd_config.json", "README.md"} if lusd_config is None else {"README.md"}
        for name in keep:
            if (out / name).exists():
                shutil.copyfile(out / name, tmp / name)
        shutil.rmtree(out)
    os.replace(tmp, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log.info("exported %s (%.1f MB, scaling factor %.4f)", out, size / 1e6, sf)
    return out
