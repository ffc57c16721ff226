"""The CLIP BPE tokenizer files shipped with lusd (see README.md in this folder)."""

from __future__ import annotations

from pathlib import Path

TOKENIZER_DIR = Path(__file__).parent


def clip_tokenizer(model_max_length: int = 77):
    """Load the shipped CLIP tokenizer (same vocabulary as Stable Diffusion 1.x), offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), model_max_length=model_max_length)
