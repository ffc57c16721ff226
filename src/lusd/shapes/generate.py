"""Plain text-to-image with the shapes model (or any SD folder): diffusers + DDIM."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from lusd.errors import ModelLoadError

log = logging.getLogger(__name__)


def load_t2i(model: str | Path | None = None, device: str = "cpu"):
    """A diffusers StableDiffusionPipeline with a DDIM scheduler (default: shipped model)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from lusd.shapes import SHAPES_MODEL_DIR

    folder = Path(model) if model is not None else SHAPES_MODEL_DIR
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"{folder} is not a diffusers model folder (no model_index.json)")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder),
            torch_dtype=torch.float32,
            safety_checker=None,
            requires_safety_checker=False,
            use_safetensors=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {folder}: {exc}".splitlines()[0]) from None
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@torch.inference_mode()
def generate(
    pipe,
    prompts: str | list[str],
    seeds: int | list[int] = 0,
    steps: int = 50,
    guidance: float = 7.5,
) -> list[Image.Image]:
    """Images for ``prompts`` (one seeded generator per prompt, so batching changes nothing)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    seeds = [seeds] * len(prompts) if isinstance(seeds, int) else list(seeds)
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    out = pipe(
        prompts,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=gens,
        output_type="pil",
    )
    return out.images
