"""CLIP-I, CLIP-T and CLIP-R with a transformers ``CLIPModel`` loaded from a user-given path.

The paper uses CLIP ViT-B/32; any CLIPModel folder (or a cached hub id) works.
Images are preprocessed here (resize shorter side, centre crop, normalise) so
no torchvision-backed image processor is needed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lusd.errors import ModelLoadError

log = logging.getLogger(__name__)

#: OpenAI CLIP normalisation (used when the folder has no preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipScorer:
    """Normalised image and text embeddings from one CLIPModel."""

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        import torch
        from transformers import CLIPModel

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        text = str(path)
        if not Path(text).expanduser().exists() and (
            text.startswith((".", "/", "~")) or text.count("/") != 1  # not a hub id
        ):
            raise ModelLoadError(f"CLIP model not found: {path} (give a CLIPModel folder)")
        try:
            self.model = CLIPModel.from_pretrained(str(path)).to(self.device).eval()
        except Exception as exc:  # transformers raises OSError, ValueError, ...
            raise ModelLoadError(
                f"cannot load a CLIP model from {path}: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}"
            ) from None
        self.tokenizer = _tokenizer(path)
        vision = self.model.config.vision_config
        self.size = int(vision.image_size)
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        pre = Path(path) / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            self.mean = tuple(cfg.get("image_mean", self.mean))
            self.std = tuple(cfg.get("image_std", self.std))
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)

    def pixel_values(self, images: list[Image.Image]):
        import torch

        arrays = [_center_square(im.convert("RGB"), self.size) for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def image_embeds(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=self.pixel_values(images)).pooler_output
            emb = self.model.visual_projection(pooled)
        return _normalise(emb.float().cpu().numpy())

    def text_embeds(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        with torch.inference_mode():
            out = self.model.text_model(
                input_ids=tok["input_ids"].to(self.device),
                attention_mask=tok["attention_mask"].to(self.device),
            )
            emb = self.model.text_projection(out.pooler_output)
        return _normalise(emb.float().cpu().numpy())


def clip_scores(
    scorer: ClipScorer, source: Image.Image, edited: Image.Image, target_prompt: str
) -> dict[str, float]:
    """CLIP-I (source vs edited), CLIP-T (edited vs target), CLIP-R = CLIP-T / CLIP-T(source)."""
    img = scorer.image_embeds([source, edited])
    txt = scorer.text_embeds([target_prompt])[0]
    clip_t_source = float(img[0] @ txt)
    clip_t = float(img[1] @ txt)
    return {
        "clip_i": float(img[0] @ img[1]),
        "clip_t": clip_t,
        "clip_t_source": clip_t_source,
        "clip_r": clip_t / clip_t_source if clip_t_source != 0 else float("nan"),
    }


def _tokenizer(path: str | Path):
    from transformers import CLIPTokenizer

    folder = Path(path)
    if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
        try:
            return CLIPTokenizer.from_pretrained(str(folder))
        except Exception as exc:
            log.warning("tokenizer in %s unusable (%s); using the shipped one", folder, exc)
    from lusd.tokenizer import clip_tokenizer

    return clip_tokenizer()


def _center_square(image: Image.Image, size: int) -> np.ndarray:
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)
