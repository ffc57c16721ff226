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
            if single_file_config is not None:
                raise ModelLoadError(
                    "--model-config is only for single-file checkpoints; "
                    f"{model} carries its own config"
                )
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
    """Anything but ``owner/name`` (a hub id) is meant as a local path."""
    return text.startswith((".", "/", "~")) or text.count("/") != 1


def _load_single_file(path: Path, allow_pickle: bool, config: str | Path | None, torch_dtype):
    """A CompVis/LDM-format checkpoint plus a diffusers config folder (or hub id) for its layout.

    The config is required: diffusers would otherwise guess one and fetch it from the hub.
    A local folder is read with ``local_files_only`` so nothing is downloaded.
    """
    import warnings

    from diffusers import StableDiffusionPipeline

    from lusd.config import read_model_config
    from lusd.pipeline import LUSDPipeline

    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    if path.suffix.lower() != ".safetensors" and not allow_pickle:
        raise ModelLoadError(
            f"{path}: pickled checkpoint ({path.suffix}); it can run code when loaded: "
            "convert it to .safetensors or pass --allow-pickle if you trust it"
        )
    if path.suffix.lower() == ".safetensors":
        _check_checkpoint_keys(path)
    local = _check_single_file_config(path, config)
    with warnings.catch_warnings():  # its scheduler is replaced below
        warnings.filterwarnings("ignore", message=".*steps_offset", category=FutureWarning)
        try:
            sd = StableDiffusionPipeline.from_single_file(
                str(path),
                config=str(config),
                local_files_only=local,
                torch_dtype=torch_dtype,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        except (RuntimeError, NotImplementedError, ValueError) as error:
            raise _mismatch_error(path, config, error) from None
    for name in ("unet", "vae", "text_encoder"):
        _check_all_weights_loaded(path, name, getattr(sd, name))
    # StableDiffusionPipeline rewrites old scheduler configs in place (steps_offset); reload it
    # so a single file and its diffusers folder give the same scheduler.
    scheduler = type(sd.scheduler).from_pretrained(
        str(config), subfolder="scheduler", local_files_only=local
    )
    pipe = LUSDPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=scheduler,
    )
    if local:
        pipe.default_config = read_model_config(config)
        pipe.use_mask_levels(pipe.default_config)
    return pipe


def _mismatch_error(path: Path, config: str | Path, error: Exception) -> Exception:
    """diffusers' errors for a checkpoint that does not fit the config, as one line."""
    import re

    text = str(error)
    shape = re.search(r"because (\S+) expected shape (.+?), but got (.+?)\.(?:\s|$)", text)
    if shape:
        weight, expected, got = shape.groups()
        detail = f"{weight} is {got} in the checkpoint but {expected} in the config"
    elif "meta tensor" in text:  # weights the checkpoint lacks stay on the meta device
        detail = "weights missing from the checkpoint"
    else:
        return error
    return ModelLoadError(
        f"{path}: does not fit the architecture in {config} ({detail}); "
        "does --model-config match this model?"
    )


def _check_checkpoint_keys(path: Path) -> None:
    """Read only the safetensors header: a whole SD model in the original (LDM) layout?"""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as error:  # safetensors raises its own error types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"cannot load {path}: not a valid .safetensors file ({reason})"
        ) from None
    if not any(key.startswith("model.diffusion_model.") for key in keys):
        raise ModelLoadError(
            f"{path}: not a single-file Stable Diffusion checkpoint (no model.diffusion_model.* "
            "weights); LoRAs and lone components cannot be loaded as a model"
        )


def _check_single_file_config(path: Path, config: str | Path | None) -> bool:
    """Refuse a missing or unusable config early; True when it is a local folder."""
    if config is None or not str(config).strip():
        raise ModelLoadError(
            f"{path}: a single-file checkpoint needs the diffusers config of its architecture: "
            "pass --model-config FOLDER (a diffusers SD folder of the same model family, "
            "e.g. stable-diffusion-v1-5, or its hub id)"
        )
    folder = Path(config)
    if folder.is_dir():
        check_model_folder(folder)
        return True
    if folder.exists() or _looks_like_local_path(str(config)):
        raise ModelLoadError(f"--model-config {config}: not found or not a folder")
    return False


def _check_all_weights_loaded(path: Path, name: str, module: torch.nn.Module) -> None:
    """diffusers leaves weights the checkpoint lacks on the meta device; name the first one."""
    missing = [key for key, value in module.state_dict().items() if value.is_meta]
    if missing:
        raise ModelLoadError(
            f"{path}: {len(missing)} {name} weight(s) missing from the checkpoint "
            f"(e.g. {missing[0]}); does --model-config match this model?"
        )
