"""Cost of one LUSD iteration against a bare UNet forward and an explicit-softmax capture,
and of one iteration of the CDS and PDS baselines on the same UNet.

Each variant runs in its own process so that its peak memory (max RSS, or CUDA peak
allocation on GPU) is its own. Variants, the first three on the same batch of two:
- bare: one UNet forward, default SDPA attention everywhere (the floor);
- lusd: one full LUSD iteration (noise, UNet forward with the mask capture, refined
  map, EMA, direction, update) through lusd.distill.Distiller;
- explicit: one UNet forward with explicit softmax in every attention layer, keeping
  each layer's target-branch attention map (the reference code's approach);
- cds: one CDS iteration (a no-grad pass of four rows reading the decoder's
  self-attention, a pass of one row with gradients, a backward to the latent);
- pds: one PDS iteration (a pass of four rows, AdamW on the latent).

    python bench/iteration_cost.py --model sd15 --model shapes
writes bench/results/iteration_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from machine import machine, process_memory_mb  # bench/ is on sys.path when run as a script
from timing import mask_distiller, rule_distiller, timed, use_attention

RESULTS = Path(__file__).parent / "results"


def sd15_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )


def load_unet(name: str):
    """(unet, latent size, text length x width) for a named model."""
    if name == "sd15":
        return sd15_unet(), 64, (77, 768)
    from lusd.loading import load_pipeline

    if name == "shapes":
        pipe = load_pipeline(None, "cpu" if not torch.cuda.is_available() else "cuda")
    else:
        from lusd.pipeline import LUSDPipeline
        from lusd.testing.tiny import tiny_components

        pipe = LUSDPipeline(**tiny_components())
    size = pipe.unet.config.sample_size
    return pipe.unet, size, (77, pipe.text_encoder.config.hidden_size)


class ExplicitStoreProcessor:
    """Explicit softmax attention that keeps every layer's head-averaged target map."""

    def __init__(self, sink: list):
        self.sink = sink

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None
    ):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        batch = hidden_states.shape[0]
        self.sink.append(probs.view(batch, attn.heads, *probs.shape[1:])[1].mean(0))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


class Bench:
    """One model; three ways to run an iteration on the same batch of two, and the CDS and
    PDS iterations."""

    def __init__(self, model: str, device: str):
        from lusd.distill import Conditioning

        unet, size, (tokens, width) = load_unet(model)
        self.device = device
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        self.unet = unet.to(device, self.dtype).eval()
        gen = torch.Generator().manual_seed(0)
        self.latents = torch.randn(1, 4, size, size, generator=gen).to(device)
        text = [
            torch.randn(1, tokens, width, generator=gen).to(device, self.dtype) for _ in range(3)
        ]
        self.cond = Conditioning(*text)
        self.sink: list = []

        def predict(x, t, e):
            return self.unet(x.to(self.dtype), t, encoder_hidden_states=e).sample

        self.layers, self.store, self.distiller = mask_distiller(self.unet, predict, size, gen)
        self.baselines = {v: rule_distiller(self.unet, predict, v, gen) for v in ("cds", "pds")}

    def once(self, variant: str) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of one run of ``variant``."""
        # CDS back-propagates, which inference tensors do not allow
        with torch.no_grad() if variant == "cds" else torch.inference_mode():
            return self._once(variant)

    def _once(self, variant: str) -> tuple[float, float]:
        if variant in self.baselines:
            use_attention(self.unet, "bare", self.layers, self.store)
            distiller = self.baselines[variant]
            return timed(
                self.device, lambda: distiller.run(self.latents, self.cond, use_mask=False)
            )
        if variant == "lusd":
            use_attention(self.unet, variant, self.layers, self.store)
            return timed(
                self.device, lambda: self.distiller.run(self.latents, self.cond, use_mask=True)
            )
        if variant == "bare":
            use_attention(self.unet, variant, self.layers, self.store)
        else:
            self.unet.set_attn_processor(ExplicitStoreProcessor(self.sink))
        batch = self.latents.repeat(2, 1, 1, 1).to(self.dtype)
        embeddings = torch.cat([self.cond.source, self.cond.target])
        timestep = torch.tensor([500, 500], device=self.device)
        self.sink.clear()
        return timed(
            self.device, lambda: self.unet(batch, timestep, encoder_hidden_states=embeddings)
        )


def peak_memory(model: str, variant: str, device: str) -> float:
    """Peak memory (MiB) of a fresh process that builds the model and runs ``variant`` twice."""
    bench = Bench(model, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bench.once(variant)
    bench.once(variant)
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # VmHWM belongs to this process image; ru_maxrss would include the parent's peak
    # (Linux carries it across fork and exec).
    return process_memory_mb("self", "VmHWM")


def timings(model: str, device: str, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Interleaved timings (bare, lusd, explicit, cds, pds, bare, ...) so load changes hit
    all alike."""
    bench = Bench(model, device)
    result: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for round_ in range(repeats + 1):
        for variant in VARIANTS:
            seconds = bench.once(variant)
            if round_:  # round 0 warms up
                result[variant].append(seconds)
    return result


VARIANTS = ("bare", "lusd", "explicit", "cds", "pds")


def child(model: str, variant: str, device: str) -> float:
    command = [sys.executable, __file__, "--child", model, variant, "--device", device]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=["sd15", "shapes", "tiny"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=RESULTS / "iteration_cost.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(peak_memory(*args.child, args.device))
        return
    rows = []
    for model in args.model or ["sd15", "tiny"]:
        seconds = timings(model, args.device, args.repeats)
        # On a shared CPU, process CPU time is steadier than wall time (it excludes the
        # time other processes hold the cores); both are reported.
        clock = 1 if args.device == "cpu" else 0
        bare = statistics.median(x[clock] for x in seconds["bare"])
        for variant in VARIANTS:
            median = statistics.median(x[clock] for x in seconds[variant])
            row = {
                "model": model,
                "variant": variant,
                "device": args.device,
                "clock": "process_cpu" if clock else "wall",
                "seconds_median": round(median, 4),
                "wall_seconds_all": [round(x[0], 4) for x in seconds[variant]],
                "cpu_seconds_all": [round(x[1], 4) for x in seconds[variant]],
                "vs_bare": round(median / bare, 3),
                "peak_memory_mb": round(child(model, variant, args.device), 1),
                "peak_memory_kind": "cuda_max_allocated" if args.device == "cuda" else "vm_hwm",
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "repeats": args.repeats, "results": rows}
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
