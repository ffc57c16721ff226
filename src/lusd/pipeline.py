"""LUSDPipeline: a diffusers pipeline that edits one image with LUSD (or the SDS/DDS baselines)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline

from lusd.attention import (
    MaskLayers,
    choose_mask_layers,
    install_capture,
)
from lusd.config import EditConfig, preset_config, read_model_config
from lusd.edit_batch import BatchEditing, EditInputs, EditOutput
from lusd.errors import ConfigError, PromptError
from lusd.families import SD, SDXL, SDFamily, family_from_index, family_of
from lusd.focus import resolve_focus
from lusd.images import DEFAULT_MAX_PIXELS, fit_size, load_image
from lusd.inputs import check_prompt
from lusd.regions import Region
from lusd.rules import rule_class


class LUSDPipeline(BatchEditing, DiffusionPipeline):
    """Localized Update Score Distillation on any Stable Diffusion 1.x/2.x model.

    ``from_pretrained`` on an SDXL folder returns an :class:`LUSDXLPipeline`; ``self.family``
    (:mod:`lusd.families`) says how prompts become UNet conditioning.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    text_encoder_2 = None
    tokenizer_2 = None

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler):
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
        )
        self._setup()

    def _setup(self) -> None:
        self.family = family_of(self)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.default_config = EditConfig()
        self._mask_layers: dict[tuple[int, int], MaskLayers] = {}
        install_capture(self.unet)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path | None = None,
        family: SDFamily | None = None,
        **kwargs,
    ):
        """Load any SD or SDXL folder or hub id; None loads the shipped shapes-world model.

        ``family`` (SD or SDXL), when the caller has read it already, saves reading the
        folder's model_index.json once more.
        """
        if pretrained_model_name_or_path is None:
            from lusd.shapes import SHAPES_MODEL_DIR

            pretrained_model_name_or_path = SHAPES_MODEL_DIR
        if cls is LUSDPipeline:
            family = family or _family_of_model(pretrained_model_name_or_path)
            family_class = pipeline_class(family)
            if family_class is not cls:
                return family_class.from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe = super().from_pretrained(str(pretrained_model_name_or_path), **kwargs)
        if Path(pretrained_model_name_or_path).is_dir():
            pipe.default_config = read_model_config(pretrained_model_name_or_path)
        return pipe

    # ---- sizes and inputs ---------------------------------------------------------------------

    @property
    def native_size(self) -> int:
        """Longer image side the model was trained at (SD1.5: 512, SDXL: 1024)."""
        return self.unet.config.sample_size * self.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor x UNet downsampling)."""
        return self.size_multiple_for(self.default_config)

    def size_multiple_for(self, config: EditConfig) -> int:
        unet_factor = 2 ** (len(self.unet.config.down_block_types) - 1)
        return self.vae_scale_factor * max(unet_factor, self.mask_layers_for(config).cross_factor)

    @property
    def mask_layers(self) -> MaskLayers:
        """The attention layers the mask reads with the model's default config."""
        return self.mask_layers_for(self.default_config)

    def mask_layers_for(self, config: EditConfig) -> MaskLayers:
        """The attention layers the mask reads at the levels ``config`` asks for."""
        levels = (config.mask_cross_factor, config.mask_self_factor)
        if levels not in self._mask_layers:
            self._mask_layers[levels] = choose_mask_layers(self.unet, *levels)
        return self._mask_layers[levels]

    def working_size(self, size: tuple[int, int], config: EditConfig) -> tuple[int, int]:
        return fit_size(
            *size, config.resolution or self.native_size, self.size_multiple_for(config)
        )

    def resolve_config(
        self, preset: str | None, config: EditConfig | None, overrides: dict
    ) -> EditConfig:
        """The edit's config: ``config`` as given (a preset, if named, applied on top), else
        the preset on the model's defaults (which start LUSD's presets only); then overrides."""
        if config is not None:
            if preset is not None:
                return preset_config(preset, config, keep_base=True, **overrides)
            return config.replace(**overrides) if overrides else config
        return preset_config(preset or "lusd", self.default_config, **overrides)

    def check_inputs(
        self, source_prompt: str, target_prompt: str, config: EditConfig | None = None
    ) -> None:
        if not isinstance(target_prompt, str) or not target_prompt.strip():
            raise PromptError("the target prompt is empty: say what the edited image should show")
        if not isinstance(source_prompt, str):
            raise PromptError("the source prompt must be text (it may be empty)")
        check_prompt(target_prompt)
        tokenizers = self.family.tokenizers(self)
        for tokenizer in tokenizers:
            check_prompt_length(tokenizer, source_prompt, "source prompt")
            check_prompt_length(tokenizer, target_prompt, "target prompt")
        compares = config is None or rule_class(config.method).compares_prompts
        if compares and all(
            tokenizer(source_prompt).input_ids == tokenizer(target_prompt).input_ids
            for tokenizer in tokenizers
        ):
            raise PromptError(
                f"the prompts ask for no change: the model reads {target_prompt!r} exactly as "
                f"{source_prompt!r}; say in the target prompt what should be different"
            )

    def focus_tokens(
        self, source_prompt: str, target_prompt: str, focus: list[str] | None = None
    ) -> tuple[list[str], list[int]]:
        """Focus words and their token positions, the same through every tokenizer."""
        tokenizers = self.family.tokenizers(self)
        words, indices = resolve_focus(tokenizers[0], source_prompt, target_prompt, focus)
        for other in tokenizers[1:]:
            _, again = resolve_focus(other, source_prompt, target_prompt, words)
            if again != indices:
                raise PromptError(
                    f"the tokenizers place the focus words {words} at different token positions "
                    f"({indices} and {again}); give other --focus words"
                )
        return words, indices

    # ---- model calls --------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> Any:
        """SD: the text encoder's hidden states; SDXL: ``XLConditioning`` (hidden + pooled)."""
        return self.family.encode_prompt(self, prompt)

    def upcast_vae(self) -> None:
        """Upcast a half-precision VAE (float16, bfloat16) to float32 when its config asks
        (``force_upcast``).

        SD and SDXL VAEs overflow in float16; a fixed fp16 VAE (``force_upcast: false``,
        e.g. madebyollin/sdxl-vae-fp16-fix) keeps its dtype. ``load_pipeline`` calls it once;
        a pipeline built otherwise and moved to float16 calls it before its first edit.
        """
        if self.vae.dtype != torch.float32 and getattr(self.vae.config, "force_upcast", True):
            self.vae.to(dtype=torch.float32)

    def encode_image(self, image: PIL.Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1)[None].to(self.vae.device, self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.mean
        return latents.float() * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        scaled = (latents / self.vae.config.scaling_factor).to(self.vae.device, self.vae.dtype)
        pixels = self.vae.decode(scaled).sample.float()
        return ((pixels[0].permute(1, 2, 0).cpu().numpy() + 1) / 2).clip(0, 1)

    def predict_eps(self, latents: torch.Tensor, timestep: torch.Tensor, embeddings: Any):
        kwargs = self.family.unet_kwargs(embeddings)
        out = self.unet(latents.to(self.unet.dtype), timestep, **kwargs).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            abar = self.scheduler.alphas_cumprod.to(latents.device)[timestep].view(-1, 1, 1, 1)
            out = abar.sqrt() * out.float() + (1 - abar).sqrt() * latents.float()
        return out

    # ---- the edit -----------------------------------------------------------------------------

    def __call__(
        self,
        image: Any,
        source_prompt: str = "",
        target_prompt: str = "",
        *,
        focus: list[str] | None = None,
        preset: str | None = None,
        config: EditConfig | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        callback: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        region: Region | None = None,
        crop: bool = True,
        judge: bool = False,
        output_type: str = "pil",
        return_dict: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        **overrides: Any,
    ) -> EditOutput | tuple:
        """Edit ``image`` from ``source_prompt`` to ``target_prompt``.

        ``config`` is used as given (a complete config, e.g. from :func:`lusd.edit_path.run_edit`);
        without it ``preset`` (default "lusd") on the model's defaults. ``overrides`` are
        EditConfig fields. ``should_stop()`` is asked before every iteration: True ends the
        edit early (``stats["interrupted"]``). ``region`` (:class:`lusd.regions.Region`)
        restricts the edit to part of the picture, which is then edited on a crop around it
        at the model's working size unless ``crop`` is False (docs/regions.md). A list of
        generators makes one candidate per generator, optimised together in one batched
        loop; each equals the edit run alone with its generator. ``judge`` scores every
        candidate (``scores``, :func:`lusd.judge.judge_candidates`). Everything the edit
        keeps belongs to this call, so several threads may run edits on one pipeline at once.
        """
        if output_type not in ("pil", "np", "pt"):
            raise ConfigError(f"output_type must be pil, np or pt, got {output_type!r}")
        cfg = self.resolve_config(preset, config, overrides)
        edit = EditInputs(
            load_image(image, max_pixels), source_prompt, target_prompt, focus, region, crop,
            generator if isinstance(generator, list) else [generator], judge,
        )  # fmt: skip
        output = self.edit_batch([edit], cfg, callback, should_stop)[0]
        output.stats["preset"] = preset
        if output_type != "pil":
            stacked = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in output.images])
            output.images = (
                stacked if output_type == "np" else torch.from_numpy(stacked).permute(0, 3, 1, 2)
            )
        return output if return_dict else output.to_tuple()


class LUSDXLPipeline(LUSDPipeline):
    """LUSD on SDXL: two text encoders and tokenizers, pooled ``text_embeds`` and ``time_ids``.

    Same call and outputs as :class:`LUSDPipeline`; :data:`lusd.families.SDXL` does the
    encoding. ``force_zeros_for_empty_prompt`` (SDXL base: true) makes the unconditional
    embedding of DDS/SDS guidance zeros, as diffusers' SDXL pipeline does.
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae"

    def __init__(
        self,
        vae,
        text_encoder,
        text_encoder_2,
        tokenizer,
        tokenizer_2,
        unet,
        scheduler,
        force_zeros_for_empty_prompt: bool = True,
    ):
        DiffusionPipeline.__init__(self)
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
        )
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self._setup()


def pipeline_class(family: SDFamily) -> type[LUSDPipeline]:
    """The LUSD pipeline class of a model family."""
    return LUSDXLPipeline if family is SDXL else LUSDPipeline


def _family_of_model(model: str | Path) -> SDFamily:
    """The family of a folder or hub id from its model_index.json (SD when unreadable)."""
    import json

    index_file = Path(model) / "model_index.json"
    try:
        if index_file.is_file():
            index = json.loads(index_file.read_text())
        elif Path(model).exists():
            return SD
        else:
            index = dict(DiffusionPipeline.load_config(str(model)))
    except Exception:  # unreadable here: from_pretrained reports it
        return SD
    return family_from_index(index, str(model)) if isinstance(index, dict) else SD


def check_prompt_length(tokenizer: Any, prompt: str, name: str = "prompt") -> None:
    """Raise PromptError when ``prompt`` has more tokens than the text encoder takes."""
    limit = tokenizer.model_max_length
    count = len(tokenizer(prompt).input_ids)
    if count > limit:
        raise PromptError(
            f"the {name} is {count} tokens long; the text encoder takes at most "
            f"{limit} (start and end tokens included): shorten it"
        )
