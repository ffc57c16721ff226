"""Model families: how each kind of Stable Diffusion encodes prompts and conditions its UNet.

A family knows its components, its tokenizers, how a prompt becomes UNet conditioning,
and which diffusers pipeline reads its single-file checkpoints. The pipeline, the loader
and ``lusd info`` ask the family instead of branching on the model:

- ``SD`` (Stable Diffusion 1.x/2.x): one CLIP text encoder, its last hidden states;
- ``SDXL``: two text encoders, their penultimate hidden states concatenated, the pooled
  projection of the second as ``text_embeds``, and ``time_ids`` (original size, crop
  top-left, target size) as the UNet's added conditioning, as diffusers'
  ``StableDiffusionXLPipeline.encode_prompt`` and ``_get_add_time_ids`` build them.

Everything else (SD3, Flux, ControlNet, refiners, ...) is refused with one line naming
what is supported (:func:`family_from_index`, :func:`family_from_checkpoint_keys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from lusd.errors import UnsupportedModelError

SUPPORTED = "Stable Diffusion 1.x/2.x and SDXL (diffusers folders or single .safetensors files)"


@dataclass(frozen=True)
class XLConditioning:
    """SDXL's UNet conditioning for a batch: token embeddings, pooled embedding, time ids."""

    hidden: torch.Tensor  # (batch, tokens, width_1 + width_2): encoder_hidden_states
    pooled: torch.Tensor  # (batch, projection_dim): added_cond_kwargs["text_embeds"]
    time_ids: torch.Tensor | None = None  # (batch, 6): added_cond_kwargs["time_ids"]

    @staticmethod
    def cat(items: Sequence[XLConditioning]) -> XLConditioning:
        """Stack along the batch, like ``torch.cat`` does for SD's plain tensors."""
        times = [item.time_ids for item in items]
        return XLConditioning(
            torch.cat([item.hidden for item in items]),
            torch.cat([item.pooled for item in items]),
            None if any(t is None for t in times) else torch.cat(times),
        )


class SDFamily:
    """Stable Diffusion 1.x/2.x: one CLIP text encoder; the UNet takes its last hidden states."""

    name = "sd"
    title = "Stable Diffusion 1.x/2.x"
    components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    weighted = ("unet", "vae", "text_encoder")
    text_encoders = ("text_encoder",)
    single_file_pipeline = "StableDiffusionPipeline"
    single_file_kwargs: dict[str, Any] = dict(
        safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )

    def tokenizers(self, pipe) -> list:
        return [pipe.tokenizer]

    def encode_prompt(self, pipe, prompt: str) -> torch.Tensor:
        ids = _token_ids(pipe.tokenizer, prompt).to(pipe.text_encoder.device)
        return pipe.text_encoder(ids)[0].to(pipe.unet.dtype)

    def empty_prompt(self, pipe) -> torch.Tensor:
        """The unconditional embedding of classifier-free guidance: the empty prompt's."""
        return self.encode_prompt(pipe, "")

    def condition(self, pipe, embeddings: torch.Tensor, **sizes: Any) -> torch.Tensor:
        """SD's UNet takes nothing but the text: ``sizes`` are ignored."""
        return embeddings

    def unet_kwargs(self, embeddings: torch.Tensor) -> dict[str, Any]:
        return {"encoder_hidden_states": embeddings}


class SDXLFamily(SDFamily):
    """SDXL base: two text encoders, pooled ``text_embeds`` and size/crop ``time_ids``."""

    name = "sdxl"
    title = "SDXL"
    components = (*SDFamily.components, "text_encoder_2", "tokenizer_2")
    weighted = (*SDFamily.weighted, "text_encoder_2")
    text_encoders = ("text_encoder", "text_encoder_2")
    single_file_pipeline = "StableDiffusionXLPipeline"
    single_file_kwargs = dict(image_encoder=None, feature_extractor=None, add_watermarker=False)

    def tokenizers(self, pipe) -> list:
        return [pipe.tokenizer, pipe.tokenizer_2]

    def encode_prompt(self, pipe, prompt: str) -> XLConditioning:
        """Penultimate hidden states of both encoders side by side; the second one's pooled."""
        hidden, pooled = [], None
        encoders = (pipe.text_encoder, pipe.text_encoder_2)
        for tokenizer, encoder in zip(self.tokenizers(pipe), encoders, strict=True):
            ids = _token_ids(tokenizer, prompt).to(encoder.device)
            out = encoder(ids, output_hidden_states=True)
            if out[0].ndim == 2:  # CLIPTextModelWithProjection: the projected pooled output
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
        if pooled is None:
            raise UnsupportedModelError(
                "SDXL needs a CLIPTextModelWithProjection as text_encoder_2 (its pooled output "
                f"conditions the UNet); this model has {type(pipe.text_encoder_2).__name__}"
            )
        dtype = pipe.unet.dtype
        return XLConditioning(torch.cat(hidden, dim=-1).to(dtype), pooled.to(dtype))

    def empty_prompt(self, pipe) -> XLConditioning:
        """Zeros when the model says so (``force_zeros_for_empty_prompt``, SDXL base: true)."""
        empty = self.encode_prompt(pipe, "")
        if getattr(pipe.config, "force_zeros_for_empty_prompt", True):
            return XLConditioning(torch.zeros_like(empty.hidden), torch.zeros_like(empty.pooled))
        return empty

    def condition(
        self,
        pipe,
        embeddings: XLConditioning,
        *,
        original_size: tuple[int, int],
        crop_top_left: tuple[int, int] = (0, 0),
        target_size: tuple[int, int],
    ) -> XLConditioning:
        """Attach SDXL's micro-conditioning; sizes are (height, width) in pixels."""
        sizes = (original_size, crop_top_left, target_size)
        time_ids = time_ids_for(pipe.unet, embeddings.pooled.shape[-1], *sizes)
        return replace(embeddings, time_ids=time_ids.to(embeddings.pooled))

    def unet_kwargs(self, embeddings: XLConditioning) -> dict[str, Any]:
        if embeddings.time_ids is None:
            raise ValueError("SDXL conditioning without time_ids: call condition() first")
        batch = embeddings.hidden.shape[0]
        return {
            "encoder_hidden_states": embeddings.hidden,
            "added_cond_kwargs": {
                "text_embeds": embeddings.pooled,
                "time_ids": embeddings.time_ids.expand(batch, -1),
            },
        }


SD = SDFamily()
SDXL = SDXLFamily()
FAMILIES = {SD.name: SD, SDXL.name: SDXL}


def time_ids_for(
    unet,
    projection_dim: int,
    original_size: tuple[int, int],
    crop_top_left: tuple[int, int],
    target_size: tuple[int, int],
) -> torch.Tensor:
    """(1, 6) time ids ``original + crop + target``, checked against the UNet's embedding."""
    values = [*original_size, *crop_top_left, *target_size]
    passed = unet.config.addition_time_embed_dim * len(values) + projection_dim
    expected = unet.add_embedding.linear_1.in_features
    if passed != expected:
        raise UnsupportedModelError(
            f"the UNet expects an added embedding of {expected} values but SDXL conditioning "
            f"gives {passed} (6 time ids x {unet.config.addition_time_embed_dim} + pooled "
            f"{projection_dim}); is this an SDXL base model?"
        )
    return torch.tensor([values], dtype=torch.float32)


def family_of(pipe) -> SDFamily:
    """The family of built components: SDXL when a second text encoder is there."""
    has_second = getattr(pipe, "text_encoder_2", None) is not None
    text_time = getattr(pipe.unet.config, "addition_embed_type", None) == "text_time"
    if has_second and text_time:
        return SDXL
    if has_second or text_time:
        raise UnsupportedModelError(
            "a UNet with SDXL's text_time conditioning needs both text encoders and tokenizers "
            f"(text_encoder_2 {'given' if has_second else 'missing'}); lusd supports {SUPPORTED}"
        )
    return SD


# ---- what a model folder or checkpoint is ---------------------------------------------------

#: Pipeline class names lusd cannot edit with, and what to call them in the error.
_KNOWN_UNSUPPORTED = (
    ("StableDiffusion3", "Stable Diffusion 3"),
    ("Flux", "FLUX"),
    ("ControlNet", "a ControlNet pipeline"),
    ("Inpaint", "an inpainting model"),
    ("Kandinsky", "Kandinsky"),
    ("PixArt", "PixArt"),
    ("Sana", "Sana"),
    ("StableCascade", "Stable Cascade"),
    ("Wuerstchen", "Wuerstchen"),
    ("IFPipeline", "DeepFloyd IF"),
    ("StableVideo", "Stable Video Diffusion"),
)


def _present(index: dict, name: str) -> bool:
    value = index.get(name)
    return bool(value) and not (isinstance(value, list) and value[0] is None)


def family_from_index(index: dict, where: str) -> SDFamily:
    """The family of a diffusers ``model_index.json``; UnsupportedModelError names the rest.

    Reads ``_class_name`` and the components: a transformer, a ControlNet, a third text
    encoder or a UNet without a first text encoder (refiner) is not SD or SDXL.
    """
    class_name = str(index.get("_class_name", ""))
    what = next((label for key, label in _KNOWN_UNSUPPORTED if key in class_name), None)
    if what is None:
        if _present(index, "controlnet"):
            what = "a ControlNet pipeline"
        elif _present(index, "text_encoder_3"):
            what = "Stable Diffusion 3"
        elif _present(index, "transformer"):
            what = "a transformer (DiT) model"
        elif _present(index, "text_encoder_2") and not _present(index, "text_encoder"):
            what = "an SDXL refiner"
        elif _present(index, "prior") or _present(index, "decoder"):
            what = "a prior/decoder model"
    if what is not None:
        shown = f" ({class_name})" if class_name else ""
        raise UnsupportedModelError(
            f"{where}: {what}{shown} is not supported; lusd edits {SUPPORTED}"
        )
    if _present(index, "text_encoder_2") or _present(index, "tokenizer_2"):
        return SDXL
    return SD


def family_from_checkpoint_keys(keys: Sequence[str], where: str) -> SDFamily:
    """The family of a single-file (LDM/CompVis-layout) checkpoint from its key names."""
    has = lambda text: any(text in key for key in keys)  # noqa: E731
    if has("joint_blocks."):
        what = "Stable Diffusion 3"
    elif has("double_blocks.") or has("single_blocks."):
        what = "FLUX"
    elif any(key.startswith("control_model.") for key in keys):
        what = "a ControlNet"
    elif has("conditioner.embedders.0.model.") and not has("conditioner.embedders.1."):
        what = "an SDXL refiner"
    else:
        what = None
    if what is not None:
        raise UnsupportedModelError(
            f"{where}: {what} checkpoint is not supported; lusd edits {SUPPORTED}"
        )
    if any(key.startswith("conditioner.embedders.1.") for key in keys):
        return SDXL
    return SD


def _token_ids(tokenizer, prompt: str) -> torch.Tensor:
    return tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
