"""Per-iteration overhead of LUSD's attention capture on an SDXL-shaped UNet.

Compares, on the same batch of two (source, target) with SDXL's added conditioning
(``text_embeds``, ``time_ids``):
- bare: one UNet forward, diffusers' default SDPA attention everywhere (the floor);
- lusd: one full LUSD iteration through lusd.distill.Distiller with the pipeline's
  SDXL family conditioning: noise, UNet forward with the mask capture at latent/4 (cross)
  and latent/2 (self), the refined map S @ c, EMA, direction, update.

The UNet has SDXL's exact block structure (DownBlock2D then two CrossAttn levels,
transformer depth 1/2/10, linear projections, head size 64, text_time embedding,
cross-attention width 2048, 77 tokens) and SDXL's native 128x128 latent; only the channel
widths are reduced (``--channels``, SDXL: 320 640 1280) so that it runs on a CPU. The mask
layer counts (60 cross-attention layers at latent/4, 10 self-attention layers at latent/2)
are SDXL's own.

Timings are interleaved (bare, lusd, bare, ...) after a warm-up round; the median of the
rounds is reported. On a CPU the ratio uses the process's CPU time (steadier than wall
time on a shared machine); both are in the JSON.

    python bench/sdxl_overhead.py --threads 1 --repeats 5
writes bench/results/sdxl_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from machine import machine  # bench/ is on sys.path when run as a script
from timing import mask_distiller, timed, use_attention

RESULTS = Path(__file__).parent / "results"
SDXL_CHANNELS = (320, 640, 1280)
TOKENS, TEXT_WIDTH, POOLED, TIME_EMBED = 77, 2048, 1280, 256


def sdxl_shaped_unet(channels: tuple[int, int, int], latent: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=tuple(max(c // 64, 1) for c in channels),  # heads, as SDXL's config
        use_linear_projection=True,
        cross_attention_dim=TEXT_WIDTH,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=6 * TIME_EMBED + POOLED,
        norm_num_groups=32,
    )


class Bench:
    def __init__(self, channels: tuple[int, int, int], latent: int, device: str):
        from lusd.distill import Conditioning, concat_embeddings
        from lusd.families import SDXL, XLConditioning, time_ids_for

        self.device = device
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        self.unet = sdxl_shaped_unet(channels, latent).to(device, self.dtype).eval()
        gen = torch.Generator().manual_seed(0)
        self.latents = torch.randn(1, 4, latent, latent, generator=gen).to(device)
        pixels = latent * 8
        time_ids = time_ids_for(self.unet, POOLED, (pixels, pixels), (0, 0), (pixels, pixels))

        def prompt() -> XLConditioning:
            hidden = torch.randn(1, TOKENS, TEXT_WIDTH, generator=gen)
            pooled = torch.randn(1, POOLED, generator=gen)
            return XLConditioning(
                hidden.to(device, self.dtype),
                pooled.to(device, self.dtype),
                time_ids.to(device, self.dtype),
            )

        self.cond = Conditioning(prompt(), prompt())
        self.batch_cond = concat_embeddings([self.cond.source, self.cond.target])

        def predict(x, t, embeddings):
            return self.unet(x.to(self.dtype), t, **SDXL.unet_kwargs(embeddings)).sample

        self.predict = predict
        self.layers, self.store, self.distiller = mask_distiller(self.unet, predict, latent, gen)

    @torch.inference_mode()
    def once(self, variant: str) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of one run of ``variant``."""
        use_attention(self.unet, variant, self.layers, self.store)
        if variant == "lusd":
            return timed(
                self.device, lambda: self.distiller.run(self.latents, self.cond, use_mask=True)
            )
        batch = self.latents.repeat(2, 1, 1, 1)
        timestep = torch.tensor([500, 500], device=self.device)
        return timed(self.device, lambda: self.predict(batch, timestep, self.batch_cond))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs=3, default=(64, 128, 256))
    parser.add_argument("--latent", type=int, default=128, help="latent side (SDXL: 128)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=RESULTS / "sdxl_overhead.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(tuple(args.channels), args.latent, args.device)
    variants = ("bare", "lusd")
    seconds: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for round_ in range(args.repeats + 1):
        for variant in variants:
            taken = bench.once(variant)
            if round_:  # round 0 warms up
                seconds[variant].append(taken)
            print(round_, variant, [round(x, 3) for x in taken], flush=True)
    clock = 1 if args.device == "cpu" else 0
    medians = {v: statistics.median(x[clock] for x in seconds[v]) for v in variants}
    wall = {v: statistics.median(x[0] for x in seconds[v]) for v in variants}
    layers = bench.layers
    payload = {
        "machine": machine(),
        "device": args.device,
        "dtype": str(bench.dtype).removeprefix("torch."),
        "unet": {
            "shape": "SDXL blocks, transformer depth (1, 2, 10), head size 64, text_time",
            "block_out_channels": list(args.channels),
            "sdxl_block_out_channels": list(SDXL_CHANNELS),
            "latent": args.latent,
            "parameters": sum(p.numel() for p in bench.unet.parameters()),
            "mask_cross_layers": len(layers.cross),
            "mask_self_layers": len(layers.self_),
            "cross_factor": layers.cross_factor,
            "self_factor": layers.self_factor,
        },
        "repeats": args.repeats,
        "clock": "process_cpu" if clock else "wall",
        "seconds_median": {v: round(medians[v], 4) for v in variants},
        "wall_seconds_median": {v: round(wall[v], 4) for v in variants},
        "wall_seconds_all": {v: [round(x[0], 4) for x in seconds[v]] for v in variants},
        "cpu_seconds_all": {v: [round(x[1], 4) for x in seconds[v]] for v in variants},
        "lusd_vs_bare": round(medians["lusd"] / medians["bare"], 3),
        "wall_lusd_vs_bare": round(wall["lusd"] / wall["bare"], 3),
        "target": 1.10,
    }
    print(json.dumps({k: payload[k] for k in ("seconds_median", "lusd_vs_bare")}))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
