"""Which stage of the LUSD mask loses the object: the cross map, or its self-attention refinement?

On colour and shape changes of the tuning cases (seed 7, never the reported ones), noises each
source latent to a few timesteps, runs the UNet once on the target prompt and measures the
mask's cell ratio (``lusd.shapes.mask_metrics``: mean inside the changed object's grid cell
over the mean elsewhere; localised = ratio >= 2) for

* ``cross``: the focus tokens' cross-attention map alone (min-max normalised),
* ``refined``: the paper's map, ``S @ c`` with ``S`` averaged over the self layers,
* ``self:<layer>``: ``S @ c`` with one self-attention layer's ``S``.

Writes bench/results/mask_layers_<name>.json.

    python bench/mask_layers.py --model FOLDER --name shapes31g [--cases 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lusd.attention import AttentionStore, _resize, capturing, refined_map
from lusd.focus import resolve_focus
from lusd.loading import load_pipeline
from lusd.shapes.edits import make_cases
from lusd.shapes.mask_metrics import LOCALISED_RATIO, mask_localisation
from shapes_lab.edit_bench import TUNING_SEED

TIMESTEPS = (100, 300, 500, 700, 900)


def as_image(values: np.ndarray) -> Image.Image:
    low, high = values.min(), values.max()
    scaled = (values - low) / max(high - low, 1e-8)
    return Image.fromarray((scaled * 255).astype(np.uint8))


def maps_of_one_pass(
    pipe, store: AttentionStore, latents: torch.Tensor, t: int, cond: torch.Tensor
) -> dict:
    """The cross map, the refined map and one refined map per self layer, at latent size."""
    layers = store.layers
    store.reset(True)
    with torch.no_grad(), capturing(store):
        pipe.unet(latents, torch.tensor([t]), encoder_hidden_states=cond)
    hw = tuple(latents.shape[-2:])
    cross_hw = (hw[0] // layers.cross_factor, hw[1] // layers.cross_factor)
    cross = _resize(torch.stack(store.cross_maps).mean(dim=0), cross_hw, hw)
    out = {"cross": cross.numpy(), "refined": refined_map(store, hw, layers).numpy()}
    every_self = list(store.self_queries_keys)
    for name, pair in zip(layers.self_, every_self, strict=True):
        store.self_queries_keys[:] = [pair]
        out[f"self:{name.removesuffix('.processor')}"] = refined_map(store, hw, layers).numpy()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--name", default="shipped")
    p.add_argument("--cases", type=int, default=30, help="colour and shape cases")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    pipe = load_pipeline(args.model, "cpu")
    # one prompt per pass here, not the loop's [source, target]; no latent_hw: every self
    # layer keeps its query and key, to read them one by one
    store = AttentionStore(pipe.mask_layers, branch=0)
    changes = [c for c in make_cases(3 * args.cases, TUNING_SEED) if c.kind != "add"]
    generator = torch.Generator().manual_seed(0)
    ratios: dict[int, dict[str, list[float]]] = {t: {} for t in TIMESTEPS}
    for case in changes[: args.cases]:
        image = case.image()
        source = pipe.encode_image(image)
        _, indices = resolve_focus(pipe.tokenizer, case.source_prompt, case.target_prompt, None)
        store.focus = torch.tensor(indices, dtype=torch.long)
        cond = pipe.encode_prompt(case.target_prompt)
        for t in TIMESTEPS:
            abar = pipe.scheduler.alphas_cumprod[t]
            noise = torch.randn(source.shape, generator=generator)
            noisy = abar.sqrt() * source + (1 - abar).sqrt() * noise
            for key, values in maps_of_one_pass(pipe, store, noisy, t, cond).items():
                found = mask_localisation(
                    image, image, as_image(values), case.source_prompt, case.target_prompt
                )
                if "mask_ratio" in found:
                    ratios[t].setdefault(key, []).append(found["mask_ratio"])
    table = {
        str(t): {
            key: {
                "median_ratio": float(np.median(vals)),
                "localised": float(np.mean(np.asarray(vals) >= LOCALISED_RATIO)),
                "n": len(vals),
            }
            for key, vals in by_key.items()
        }
        for t, by_key in ratios.items()
    }
    payload = {
        "model": args.model or "shipped",
        "mask_layers": dataclasses.asdict(pipe.mask_layers),
        "tuning_seed": TUNING_SEED,
        "by_timestep": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"mask_layers_{args.name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    for t, by_key in table.items():
        row = "  ".join(f"{k} {v['localised']:.0%}" for k, v in by_key.items())
        print(f"t={t}: {row}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
