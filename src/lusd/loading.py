"""Loading a Stable Diffusion (1.x/2.x or SDXL) model as an LUSDPipeline, with one-line errors."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from lusd.errors import DeviceError, LUSDError, ModelLoadError
from lusd.families import SD, SDFamily, family_from_checkpoint_keys, family_from_index
from lusd.model_id import identify

logger = logging.getLogger(__name__)

#: Components every supported model has (SDXL adds text_encoder_2 and tokenizer_2).
REQUIRED_COMPONENTS = SD.components
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


def check_model_folder(folder: Path) -> SDFamily:
    """A diffusers SD/SDXL folder has model_index.json naming every component of its family.

    Returns the family; a model of another family (SD3, Flux, ControlNet, ...) is an
    UnsupportedModelError that names the supported ones.
    """
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"{folder}: not a diffusers Stable Diffusion folder (no model_index.json)"
        )
    try:
        components = json.loads(index.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{index}: not valid JSON ({error})") from None
    if not isinstance(components, dict):
        raise ModelLoadError(f"{index}: expected a JSON object naming the pipeline's components")
    family = family_from_index(components, str(folder))
    missing = [name for name in family.components if not _named(components.get(name))]
    if missing:
        raise ModelLoadError(
            f"{folder}: not a {family.title} pipeline (missing {', '.join(missing)})"
        )
    for name in family.components:
        if not (folder / name).is_dir():
            raise ModelLoadError(f"{folder}: component folder {name}/ is missing")
    return family


def _named(entry) -> bool:
    """A model_index.json entry that names a class (``[null, null]`` is an absent one)."""
    return bool(entry) and not (isinstance(entry, list) and entry[0] is None)


def _pickled_components(folder: Path, family: SDFamily = SD) -> list[str]:
    """Components whose weights are only pickles (.bin, .ckpt, ...), no .safetensors."""
    pickled = []
    for name in family.weighted:
        suffixes = {p.suffix for p in (folder / name).glob("*")}
        if ".safetensors" not in suffixes and suffixes & set(PICKLE_SUFFIXES):
            pickled.append(name)
    return pickled


def check_model_files(model: str | Path, allow_pickle: bool = False) -> SDFamily | None:
    """What a local model folder or checkpoint file shows without loading: its layout and
    pickled weights (refused unless ``allow_pickle``). A hub id or absent path passes.

    Returns a folder's family (None for a file, a hub id or an absent path)."""
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise ModelLoadError(
                f"{path}: pickled checkpoint ({path.suffix}); it can run code when loaded: "
                "convert it to .safetensors or pass --allow-pickle if you trust it"
            )
        if path.suffix.lower() not in (".safetensors", *PICKLE_SUFFIXES):
            raise ModelLoadError(f"{path}: not a model folder or a .safetensors checkpoint")
        return None
    if not path.is_dir():
        return None
    family = check_model_folder(path)
    pickled = _pickled_components(path, family)
    if pickled and not allow_pickle:
        folders = ", ".join(f"{name}/" for name in pickled)
        raise ModelLoadError(
            f"{path}: only pickled weights (.bin) in {folders}; they can run code "
            "when loaded: pass --allow-pickle if you trust them"
        )
    return family


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
        model = _shipped_model()
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
                family = check_model_files(path, allow_pickle)
            elif _looks_like_local_path(str(model)):
                raise ModelLoadError(f"model not found: {path}")
            else:
                family = _check_hub_family(str(model))
            with _library_errors_silenced():  # they are raised, and reported as one line
                pipe = LUSDPipeline.from_pretrained(
                    str(model),
                    family=family,
                    torch_dtype=torch_dtype,
                    use_safetensors=not allow_pickle,
                )
    except LUSDError:  # already one line: a bad model folder, device, lusd_config.json
        raise
    except Exception as error:  # diffusers/transformers/hub raise many kinds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"cannot load {model} as a Stable Diffusion pipeline: {reason}"
        ) from None
    pipe.to(torch_device)
    pipe.upcast_vae()
    pipe.identity = identify(None if model == _shipped_model() else model)
    return pipe


def _shipped_model() -> str:
    from lusd.shapes import SHAPES_MODEL_DIR

    return str(SHAPES_MODEL_DIR)


@contextlib.contextmanager
def _library_errors_silenced() -> Iterator[None]:
    """diffusers logs an error line before raising (e.g. a component without its weights
    file); the raised error becomes lusd's one line, so the logged copy is dropped."""
    library = logging.getLogger("diffusers")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        library.setLevel(level)


def _check_hub_family(model_id: str) -> SDFamily | None:
    """Refuse an unsupported hub model from its model_index.json before any weights come."""
    from lusd.pipeline import LUSDPipeline

    try:
        index = LUSDPipeline.load_config(model_id)
    except Exception:  # offline, gated, missing: from_pretrained reports it
        return None
    return family_from_index(dict(index), model_id)


def _looks_like_local_path(text: str) -> bool:
    """Anything but ``owner/name`` (a hub id) is meant as a local path."""
    return text.startswith((".", "/", "~")) or text.count("/") != 1


def _load_single_file(path: Path, allow_pickle: bool, config: str | Path | None, torch_dtype):
    """A CompVis/LDM-format checkpoint plus a diffusers config folder (or hub id) for its layout.

    The config is required: diffusers would otherwise guess one and fetch it from the hub.
    A local folder is read with ``local_files_only`` so nothing is downloaded. The family
    (SD or SDXL) comes from the config and must match the checkpoint's keys; diffusers'
    ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline.from_single_file`` reads it.
    """
    import warnings

    import diffusers

    from lusd.config import read_model_config
    from lusd.pipeline import pipeline_class

    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    check_model_files(path, allow_pickle)
    checkpoint_family = None
    if path.suffix.lower() == ".safetensors":
        checkpoint_family = _check_checkpoint_keys(path)
    local, family = _check_single_file_config(path, config)
    if checkpoint_family is not None and checkpoint_family is not family:
        raise ModelLoadError(
            f"{path}: the checkpoint is {checkpoint_family.title} but --model-config {config} "
            f"is {family.title}; pass a config folder of the checkpoint's family"
        )
    loader = getattr(diffusers, family.single_file_pipeline)
    with warnings.catch_warnings():  # its scheduler is replaced below
        warnings.filterwarnings("ignore", message=".*steps_offset", category=FutureWarning)
        try:
            sd = loader.from_single_file(
                str(path),
                config=str(config),
                local_files_only=local,
                torch_dtype=torch_dtype,
                **family.single_file_kwargs,
            )
        except (RuntimeError, NotImplementedError, ValueError) as error:
            raise _mismatch_error(path, config, error) from None
    for name in family.weighted:
        _check_all_weights_loaded(path, name, getattr(sd, name))
    # StableDiffusionPipeline rewrites old scheduler configs in place (steps_offset); reload it
    # so a single file and its diffusers folder give the same scheduler.
    scheduler = type(sd.scheduler).from_pretrained(
        str(config), subfolder="scheduler", local_files_only=local
    )
    parts = {name: getattr(sd, name) for name in family.components if name != "scheduler"}
    extra = {}
    if "force_zeros_for_empty_prompt" in sd.config:
        extra["force_zeros_for_empty_prompt"] = sd.config.force_zeros_for_empty_prompt
    pipe = pipeline_class(family)(**parts, scheduler=scheduler, **extra)
    if local:
        pipe.default_config = read_model_config(config)
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


def _check_checkpoint_keys(path: Path) -> SDFamily:
    """Read only the safetensors header: a whole SD/SDXL model in the original (LDM) layout?"""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as error:  # safetensors raises its own error types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"cannot load {path}: not a valid .safetensors file ({reason})"
        ) from None
    family = family_from_checkpoint_keys(keys, str(path))
    if not any(key.startswith("model.diffusion_model.") for key in keys):
        raise ModelLoadError(
            f"{path}: not a single-file Stable Diffusion checkpoint (no model.diffusion_model.* "
            "weights); LoRAs and lone components cannot be loaded as a model"
        )
    return family


def _check_single_file_config(path: Path, config: str | Path | None) -> tuple[bool, SDFamily]:
    """Refuse a missing or unusable config early: (whether it is a local folder, its family)."""
    if config is None or not str(config).strip():
        raise ModelLoadError(
            f"{path}: a single-file checkpoint needs the diffusers config of its architecture: "
            "pass --model-config FOLDER (a diffusers SD or SDXL folder of the same model family, "
            "e.g. stable-diffusion-v1-5 or stable-diffusion-xl-base-1.0, or its hub id)"
        )
    folder = Path(config)
    if folder.is_dir():
        return True, check_model_folder(folder)
    if folder.exists() or _looks_like_local_path(str(config)):
        raise ModelLoadError(f"--model-config {config}: not found or not a folder")
    from lusd.pipeline import LUSDPipeline

    try:
        index = dict(LUSDPipeline.load_config(str(config)))
    except Exception:  # offline or missing: from_single_file reports it
        return False, SD
    return False, family_from_index(index, str(config))


def _check_all_weights_loaded(path: Path, name: str, module: torch.nn.Module) -> None:
    """diffusers leaves weights the checkpoint lacks on the meta device; name the first one."""
    missing = [key for key, value in module.state_dict().items() if value.is_meta]
    if missing:
        raise ModelLoadError(
            f"{path}: {len(missing)} {name} weight(s) missing from the checkpoint "
            f"(e.g. {missing[0]}); does --model-config match this model?"
        )
