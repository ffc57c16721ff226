"""Loading a Stable Diffusion model as an LUSDPipeline, with one-line errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from lusd.errors import DeviceError, ModelLoadError

logger = logging.getLogger(__name__)

REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | None) -> torch.device:
    """'auto'/None picks CUDA, then MPS, then CPU; an unavailable device is a DeviceError."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but CUDA is not available here; use --device cpu"
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' requested but MPS is not available here; use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return chosen


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """'auto'/None: float16 on CUDA/MPS, float32 on CPU."""
    if dtype in (None, "", "auto"):
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in _DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}: use auto, float32, float16 or bfloat16")
    chosen = _DTYPES[dtype]
    if chosen == torch.float16 and device.type == "cpu":
        raise DeviceError("float16 is not supported on CPU; use float32 or bfloat16")
    return chosen


def check_model_folder(folder: Path) -> None:
    """A diffusers Stable Diffusion folder has model_index.json naming every SD component."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"{folder}: not a diffusers Stable Diffusion folder (no model_index.json)"
        )
    try:
        components = json.loads(index.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{index}: not valid JSON ({error})") from None
    missing = [name for name in REQUIRED_COMPONENTS if not components.get(name)]
    if missing:
        raise ModelLoadError(
            f"{folder}: not a Stable Diffusion pipeline (missing {', '.join(missing)})"
        )
    for name in REQUIRED_COMPONENTS:
        if name != "scheduler" and name != "tokenizer" and not (folder / name).is_dir():
            raise ModelLoadError(f"{folder}: component folder {name}/ is missing")


def _has_only_pickles(folder: Path) -> bool:
    weights = [p for name in ("unet", "vae", "text_encoder") for p in (folder / name).glob("*")]
    has_safe = any(p.suffix == ".safetensors" for p in weights)
    return not has_safe and any(p.suffix in PICKLE_SUFFIXES for p in weights)


def load_pipeline(
    model: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    allow_pickle: bool = False,
    single_file_config: str | Path | None = None,
):
    """Load an LUSDPipeline from a diffusers folder, a hub id or a single checkpoint file.

    ``model`` None loads the shipped shapes-world model. Pickled weights are refused
    unless ``allow_pickle``. The VAE stays in float32 (fp16 VAEs overflow).
    """
    from lusd.pipeline import LUSDPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if model is None:
        from lusd.shapes import SHAPES_MODEL_DIR

        model = SHAPES_MODEL_DIR
    path = Path(model)
    try:
        if path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
            pipe = _load_single_file(path, allow_pickle, single_file_config, torch_dtype)
        else:
            if path.exists():
                if not path.is_dir():
                    raise ModelLoadError(f"{path}: not a model folder or a .safetensors checkpoint")
                check_model_folder(path)
                if _has_only_pickles(path) and not allow_pickle:
                    raise ModelLoadError(
                        f"{path}: only pickled weights (.bin); they can run code when loaded: "
                        "pass --allow-pickle if you trust them"
                    )
            elif _looks_like_local_path(str(model)):
                raise ModelLoadError(f"model not found: {path}")
            pipe = LUSDPipeline.from_pretrained(
                str(model), torch_dtype=torch_dtype, use_safetensors=not allow_pickle
            )
    except (ModelLoadError, DeviceError):
        raise
    except Exception as error:  # diffusers/transformers/hub raise many kinds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"cannot load {model} as a Stable Diffusion pipeline: {reason}"
        ) from None
    pipe.to(torch_device)
    pipe.vae.to(dtype=torch.float32)
    return pipe


def _looks_like_local_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") != 1 or Path(text).suffix != ""


def _load_single_file(path: Path, allow_pickle: bool, config: str | Path | None, torch_dtype):
    from diffusers import StableDiffusionPipeline

    from lusd.pipeline import LUSDPipeline, read_model_config

    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    if path.suffix.lower() != ".safetensors" and not allow_pickle:
        raise ModelLoadError(
            f"{path}: pickled checkpoint ({path.suffix}); it can run code when loaded: "
            "convert it to .safetensors or pass --allow-pickle if you trust it"
        )
    options = {"torch_dtype": torch_dtype}
    if config is not None:
        options["config"] = str(config)
    sd = StableDiffusionPipeline.from_single_file(str(path), **options)
    pipe = LUSDPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=sd.scheduler,
    )
    if config is not None and Path(config).is_dir():
        pipe.default_config = read_model_config(config)
    return pipe
