"""lusd: Localized Update Score Distillation for text-guided local image editing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lusd.config import EditConfig
from lusd.rules import PRESETS

__version__ = "0.1.0"
__all__ = [
    "PRESETS",
    "EditConfig",
    "EditOutput",
    "EditRecord",
    "EditRequest",
    "LUSDPipeline",
    "__version__",
    "edit",
    "run_edit",
]

if TYPE_CHECKING:
    from lusd.edit_path import EditRecord, EditRequest, run_edit
    from lusd.pipeline import EditOutput, LUSDPipeline


def __getattr__(name: str) -> Any:
    # The pipeline imports torch and diffusers: load it only when asked for.
    if name in ("LUSDPipeline", "EditOutput"):
        from lusd import pipeline

        return getattr(pipeline, name)
    if name in ("EditRequest", "EditRecord", "run_edit"):
        from lusd import edit_path

        return getattr(edit_path, name)
    if name == "load_pipeline":
        from lusd.loading import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'lusd' has no attribute {name!r}")


def edit(
    image: Any,
    source_prompt: str,
    target_prompt: str,
    *,
    model: str | None = None,
    device: str | None = None,
    model_config: str | None = None,
    **kwargs: Any,
):
    """One-call edit: load ``model`` (default: the shipped shapes model) and run it."""
    from lusd.loading import load_pipeline

    pipe = load_pipeline(model, device, single_file_config=model_config)
    return pipe(image, source_prompt, target_prompt, **kwargs)
