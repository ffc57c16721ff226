"""Training curves of the shapes model (loss.csv of each stage) as one matplotlib PNG."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def _read(path: Path) -> dict[str, list[float]]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def plot_curves(work: Path, out: Path) -> Path:
    """A panel per stage that has a log: VAE reconstruction (L1, MSE) and UNet losses,
    against minutes of training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unet_keys = ("loss", "mse", "token_loss", "pixel_loss", "self_loss")  # grounding, if trained
    stages = [
        (stage, keys, path)
        for stage, keys in (("vae", ("l1", "mse")), ("unet", unet_keys))
        if (path := work / stage / "loss.csv").exists()
    ]
    if not stages:
        raise FileNotFoundError(f"no vae/loss.csv or unet/loss.csv under {work}")
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), dpi=110, squeeze=False)
    for ax, (stage, keys, path) in zip(axes[0], stages, strict=True):
        data = _read(path)
        minutes = [s / 60 for s in data["seconds"]]
        for key in (k for k in keys if k in data):
            ax.plot(minutes, data[key], label=key, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("minutes (wall clock, shared 2-core machine)")
        ax.set_title(f"{stage}: {int(data['step'][-1])} steps")
        ax.grid(alpha=0.3)
        ax.legend()
        if stage == "unet":
            ax.text(
                0.02,
                0.02,
                "loss = min-SNR(5) weighted eps MSE (+ weighted grounding losses)",
                transform=ax.transAxes,
                fontsize=7,
            )
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
