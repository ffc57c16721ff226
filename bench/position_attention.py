"""Does the UNet know where it is, and does it look at the position words? (JSON result)

Two measurements on a model folder (default: the shipped shapes model), on pure-noise
latents at a few timesteps, for bench/shapes-experiments.md ("Why the model ignores position
words"):

* ``query_position_share``: for every cross-attention layer, the share of its queries'
  variance that is explained by the location alone (variance over locations of the
  query averaged over noise samples / total variance). 0: the queries do not know where
  they are; 1: they know nothing else.
* ``attention``: for the prompt "a large red circle on the top left", every layer's
  attention probability on each word (mean over locations, heads and samples) and its
  spatial contrast (std over locations / mean; 0 = every location looks alike).

    python bench/position_attention.py [--model FOLDER] [--name position_attention]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

PROMPT = "a large red circle on the top left"


def capture_cross_attention(unet, cond: torch.Tensor) -> tuple[dict, dict]:
    """Hooks on every ``attn2``: their queries and attention probabilities (by layer)."""
    queries, probs = {}, {}

    def hook(name):
        def capture(mod, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            q, k = mod.to_q(h), mod.to_k(cond)
            b, n, c = q.shape
            qh = q.view(b, n, mod.heads, c // mod.heads).transpose(1, 2)
            kh = k.view(b, -1, mod.heads, c // mod.heads).transpose(1, 2)
            queries[name] = q.detach()
            probs[name] = (qh @ kh.transpose(-1, -2) * mod.scale).softmax(-1).mean((0, 1))

        return capture

    for name, mod in unet.named_modules():
        if name.endswith("attn2"):
            mod.register_forward_pre_hook(hook(name), with_kwargs=True)
    return queries, probs


@torch.no_grad()
def measure(pipe, samples: int = 64, timesteps=(999, 800, 500)) -> dict:
    tok = pipe.tokenizer
    ids = tok([PROMPT] * samples, padding="max_length", max_length=77, return_tensors="pt")
    n_words = len(tok(PROMPT).input_ids)
    words = [w.replace("</w>", "") for w in tok.convert_ids_to_tokens(ids.input_ids[0, :n_words])]
    cond = pipe.text_encoder(ids.input_ids)[0]
    queries, probs = capture_cross_attention(pipe.unet, cond)
    share: dict[str, dict[int, float]] = {}
    attention: dict[str, dict[int, dict[str, list[float]]]] = {}
    gen = torch.Generator().manual_seed(0)
    for t in timesteps:
        pipe.unet(torch.randn(samples, 4, 16, 16, generator=gen), t, encoder_hidden_states=cond)
        for layer, q in queries.items():
            name = layer.removesuffix(".transformer_blocks.0.attn2")
            total = q.reshape(-1, q.shape[-1]).var(0).sum()
            share.setdefault(name, {})[t] = round(float(q.mean(0).var(0).sum() / total), 3)
            p = probs[layer][:, :n_words]  # locations x words
            mass, contrast = p.mean(0), p.std(0) / p.mean(0)
            attention.setdefault(name, {})[t] = {
                w: [round(float(m), 3), round(float(c), 2)]
                for w, m, c in zip(words, mass, contrast, strict=True)
            }
    return {"prompt": PROMPT, "query_position_share": share, "attention": attention}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="SD folder (default: the shipped shapes model)")
    p.add_argument("--name", default="position_attention")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    from lusd.shapes import SHAPES_MODEL_DIR
    from lusd.shapes.generate import load_t2i

    result = {"model": args.model or "shipped", **measure(load_t2i(args.model or SHAPES_MODEL_DIR))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    for layer, by_t in result["query_position_share"].items():
        att = result["attention"][layer][800]
        words = " ".join(f"{w}:{m:.3f}/{c:.2f}" for w, (m, c) in att.items())
        print(f"{layer}: position share {by_t}; t=800 mass/contrast {words}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
