"""Editing through the loop: pictures (each with one or more candidates) prepared, run as
lanes of one :class:`lusd.distill.Distiller`, then decoded, pasted back and judged.

:class:`BatchEditing` is the part of :class:`lusd.pipeline.LUSDPipeline` that does it; the
pipeline adds the model, its sizes, prompts and encoders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

from lusd.attention import AttentionStore, capturing, refined_maps
from lusd.config import EditConfig
from lusd.distill import Conditioning, Distiller, Lane
from lusd.images import paste_back, soft_mask
from lusd.regions import Region, bounding_box, crop_box, region_at, region_weights, stitch
from lusd.rules import rule_class


@dataclass
class EditOutput(BaseOutput):
    """Result of one edit.

    images: the edited image(s) (PIL list, or numpy/torch per ``output_type``);
    masks: the final LUSD mask as greyscale PIL images of the same size;
    focus_words / focus_indices: the words and token positions the mask followed;
    stats: iterations, unet_calls, filter_retries, seconds, preset, config, config_hash
    (of the first candidate; ``candidates`` lists every candidate's own);
    scores: the judge's score of each candidate (:mod:`lusd.judge`), when asked for.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    masks: list[PIL.Image.Image]
    focus_words: list[str]
    focus_indices: list[int]
    stats: dict[str, Any]
    scores: list[float] | None = None


@dataclass
class EditInputs:
    """One edit of :meth:`LUSDPipeline.edit_batch`: the picture (loaded), prompts, focus
    words, region, one generator per candidate, and whether to judge the candidates."""

    image: PIL.Image.Image
    source_prompt: str
    target_prompt: str
    focus: list[str] | None = None
    region: Region | None = None
    crop: bool = True
    generators: list[torch.Generator | None] = field(default_factory=lambda: [None])
    judge: bool = False


@dataclass
class _Prepared:
    """An edit ready for the loop (``picture`` is the crop around a region, if any)."""

    edit: EditInputs
    picture: PIL.Image.Image
    allowed: np.ndarray | None
    crop_at: tuple[int, int, int, int] | None
    region_box: list[int] | None
    size: tuple[int, int]
    source_latents: torch.Tensor
    words: list[str]
    indices: list[int]
    use_mask: bool
    latent_region: torch.Tensor | None
    cond: Conditioning
    stopped: bool = False


class BatchEditing:
    """Edits of one config as lanes of one loop (mixed into LUSDPipeline)."""

    def edit_batch(
        self,
        edits: list[EditInputs],
        config: EditConfig,
        callback: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[EditOutput]:
        """Several edits with one config; those of the same working size share every UNet
        pass (each edit's candidates too), and each gives what it gives alone."""
        started = time.perf_counter()
        for edit in edits:
            self.check_inputs(edit.source_prompt, edit.target_prompt, config)
        rule = rule_class(config.method)
        rule.check_model(self.unet)
        # rules that back-propagate through the UNet cannot run on inference tensors
        with torch.no_grad() if rule.needs_grad else torch.inference_mode():
            self.upcast_vae()
            prepared = [self._prepare(edit, config) for edit in edits]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, item in enumerate(prepared):
                groups.setdefault(tuple(item.source_latents.shape), []).append(i)
            outputs: dict[int, EditOutput] = {}
            for members in groups.values():
                group = [prepared[i] for i in members]
                results = self._distill(group, config, callback, should_stop)
                for i, item, item_results in zip(members, group, results, strict=True):
                    outputs[i] = self._output(item, item_results, config)
        for output in outputs.values():
            output.stats["seconds"] = time.perf_counter() - started
        return [outputs[i] for i in range(len(edits))]

    def _prepare(self, edit: EditInputs, cfg: EditConfig) -> _Prepared:
        """Everything one edit needs before the loop: its picture, latents, prompts, mask."""
        rule = rule_class(cfg.method)
        picture, allowed, crop_at, region_box = edit.image, None, None, None
        if edit.region is not None:
            picture, allowed, crop_at, region_box = self._crop_to(
                edit.image, edit.region, edit.crop, cfg
            )
        size = self.working_size(picture.size, cfg)
        source_latents = self.encode_image(picture.resize(size, PIL.Image.LANCZOS))
        words, indices = [], []
        if rule.reads_attention:
            words, indices = self.focus_tokens(edit.source_prompt, edit.target_prompt, edit.focus)
        latent_hw = tuple(source_latents.shape[-2:])
        # SDXL's micro-conditioning: the image's own size, no crop, the working size (h, w)
        sizes = {
            "original_size": (picture.height, picture.width),
            "crop_top_left": (0, 0),
            "target_size": (size[1], size[0]),
        }
        prompts = [self.encode_prompt(edit.source_prompt), self.encode_prompt(edit.target_prompt)]
        if rule.needs_empty:
            prompts.append(self.family.empty_prompt(self))
        return _Prepared(
            edit=edit,
            picture=picture,
            allowed=allowed,
            crop_at=crop_at,
            region_box=region_box,
            size=size,
            source_latents=source_latents,
            words=words,
            indices=indices,
            use_mask=rule.reads_attention and cfg.use_mask and bool(indices),
            latent_region=None if allowed is None else region_at(allowed, latent_hw),
            cond=Conditioning(*(self.family.condition(self, p, **sizes) for p in prompts)),
        )

    def _distill(self, group, cfg, callback, should_stop) -> list[list[Any]]:
        """Run the lanes of every candidate of every edit in ``group`` (same latent size)
        together; each edit's results, in its generators' order."""
        latent_hw = tuple(group[0].source_latents.shape[-2:])
        layers = self.mask_layers_for(cfg)
        store = AttentionStore(layers, latent_hw=latent_hw)
        lanes, owners, focus = [], [], []
        for index, item in enumerate(group):
            for generator in item.edit.generators:
                lanes.append(
                    Lane(item.source_latents, item.cond, generator, item.latent_region,
                         item.use_mask)
                )  # fmt: skip
                owners.append(index)
                focus.append(torch.tensor(item.indices, dtype=torch.long))
        distiller = Distiller(
            self.predict_eps,
            self.scheduler.alphas_cumprod,
            cfg,
            capture=lambda rows, lanes: store.reset(rows, [focus[lane] for lane in lanes]),
            read_masks=lambda: refined_maps(store, latent_hw, layers) if store.active else None,
            unet=self.unet,
        )

        def stop_now() -> bool:
            if not any(item.stopped for item in group):
                stopped = should_stop is not None and should_stop()
                for item in group:
                    item.stopped = stopped
            return group[0].stopped

        with self.progress_bar(total=cfg.num_steps) as bar, capturing(store):

            def on_step(step: int, total: int) -> None:
                bar.update()
                if callback is not None:
                    callback(step, total)

            results = distiller.run_lanes(lanes, on_step, stop_now)
        return [
            [r for r, o in zip(results, owners, strict=True) if o == i] for i in range(len(group))
        ]

    def _output(self, item: _Prepared, results: list[Any], cfg: EditConfig) -> EditOutput:
        """Decode, paste back and (when asked) judge one edit's candidates."""
        images, masks = [], []
        for result in results:
            decoded = self.decode_latents(result.latents)
            mask = None if result.mask is None else result.mask.float().cpu().numpy()
            edited, mask_image = self._finish(item.picture, decoded, mask, cfg, item.allowed)
            if item.crop_at is not None:
                edited, mask_image = stitch(item.edit.image, edited, mask_image, item.crop_at)
            images.append(edited)
            masks.append(mask_image)
        stats = {
            **vars(results[0].stats),
            "distill_seconds": results[0].stats.seconds,
            "config": cfg.to_dict(),
            "config_hash": cfg.digest(),
            "working_size": list(item.size),
            "region_box": item.region_box,
            "crop_box": None if item.crop_at is None else list(item.crop_at),
            "interrupted": item.stopped,
        }
        scores = None
        if item.edit.judge:
            from lusd.judge import judge_candidates

            verdict = judge_candidates(
                self,
                item.source_latents,
                torch.cat([r.latents for r in results]),
                item.cond,
                masks=_stacked([r.mask for r in results]),
                region=item.latent_region,
            )
            scores = [float(score) for score in verdict.scores]
            stats["judge"] = {
                "unet_passes": verdict.unet_passes,
                "seconds": verdict.seconds,
                "parts": verdict.parts,
            }
        if len(results) > 1:
            stats["candidates"] = [vars(r.stats) for r in results]
        return EditOutput(images, masks, item.words, item.indices, stats, scores)

    def _crop_to(self, original: PIL.Image.Image, region: Region, crop: bool, cfg: EditConfig):
        """(the picture to edit, the region on it, the crop box or None, the region's
        bounding box in the original) for an edit restricted to ``region``."""
        region.check_config(cfg)
        allowed = region.pixels(original.size)
        box = bounding_box(allowed)
        long_side = cfg.resolution or self.native_size
        crop_at = crop_box(box, original.size, long_side, cfg.crop_margin) if crop else None
        if crop_at is None:
            return original, allowed, None, list(box)
        left, top, right, bottom = crop_at
        return original.crop(crop_at), allowed[top:bottom, left:right], crop_at, list(box)

    def _finish(
        self,
        original: PIL.Image.Image,
        decoded: np.ndarray,
        mask: np.ndarray | None,
        cfg: EditConfig,
        allowed: np.ndarray | None = None,
    ) -> tuple[PIL.Image.Image, PIL.Image.Image]:
        """Paste the decoded edit back into the original (or return it raw) and render the mask;
        with a region (``allowed``) nothing outside it changes."""
        edited = PIL.Image.fromarray(np.uint8(decoded * 255 + 0.5))
        if cfg.paste_back:
            if mask is None:
                weights = np.ones((original.height, original.width), dtype=np.float32)
            else:
                weights = soft_mask(
                    mask, original.size, cfg.mask_threshold, cfg.mask_dilate, cfg.mask_feather
                )
            if allowed is not None:
                weights = np.minimum(weights, region_weights(allowed, cfg.mask_feather))
            edited = paste_back(original, edited, weights)
        mask_values = np.ones(decoded.shape[:2]) if mask is None else mask
        mask_image = PIL.Image.fromarray(np.uint8(mask_values * 255 + 0.5), mode="L")
        mask_image = mask_image.resize(edited.size, PIL.Image.BICUBIC)
        if allowed is not None:
            inside = np.minimum(np.asarray(mask_image), np.uint8(allowed) * 255)
            mask_image = PIL.Image.fromarray(inside, mode="L")
        return edited, mask_image


def _stacked(masks: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The candidates' masks as (K, 1, h, w), or None unless every one has a mask."""
    if any(mask is None for mask in masks):
        return None
    return torch.stack(masks)[:, None]
