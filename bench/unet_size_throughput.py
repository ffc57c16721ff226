"""Training speed of candidate UNet sizes for the shapes model, on this machine.

Each size trains for 20 and for 120 UNet steps in a fresh work folder (the shipped VAE,
the default recipe: batch 32, grounding on, as in the first 3,500 steps of a run), each in
its own `python -m shapes_lab.train` process; the difference of the two wall times gives
steps/s without the start-up. Run it alone on the machine (two torch processes slow each
other down).

    python bench/unet_size_throughput.py [--threads 2]
writes bench/results/unet_size_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/ is on sys.path when run as a script

RESULTS = Path(__file__).parent / "results"
# (channels, layers per block); the first is the UNet shipped until the sixteenth session
SIZES = [
    ((32, 64, 128), 1),
    ((64, 64, 128), 1),
    ((48, 96, 192), 1),
    ((64, 128, 128), 1),
    ((32, 64, 128), 2),
]
SHORT, LONG = 20, 120


def seconds_to_train(work: Path, steps: int, arch: dict, threads: int) -> float:
    shutil.rmtree(work / "unet", ignore_errors=True)
    (work / "arch.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "shapes_lab.train", "--work", str(work), "--stages", "unet"]
    command += ["--unet-steps", str(steps), "--arch", json.dumps(arch), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "unet_size_throughput.json")
    args = p.parse_args()
    from shapes_lab.models import Arch, build_unet
    from shapes_lab.train import main as train_main

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the work folder's VAE stage: the shipped VAE (--stages "": nothing else)
        train_main(["--work", str(work), "--vae-from", "shipped", "--stages", ""])
        for channels, layers in SIZES:
            arch = {"unet_channels": list(channels), "unet_layers": layers}
            params = sum(w.numel() for w in build_unet(Arch.from_dict(arch)).parameters())
            short = seconds_to_train(work, SHORT, arch, args.threads)
            long = seconds_to_train(work, LONG, arch, args.threads)
            speed = (LONG - SHORT) / (long - short)
            rows.append({**arch, "params_m": round(params / 1e6, 2), "steps_per_s": speed})
            print(rows[-1], flush=True)
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["relative_speed"] = row["steps_per_s"] / base
    result = {"machine": {**machine(), "threads": args.threads}, "batch": 32, "sizes": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
