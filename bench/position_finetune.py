"""Position-word diagnostics (bench/shapes-experiments.md, "Why the model ignores position words").

Fine-tunes the UNet + text encoder of a `lusd lab train-shapes` work folder for a few minutes
on chosen data, then measures the position probe and writes JSON:

    python bench/position_finetune.py --work /work/train_runs/shapes3 --minutes 15 \\
        --data one-circle --name position_one_circle
    python bench/position_finetune.py --work /work/train_runs/shapes4 --minutes 10 \\
        --t-min 500 --name position_high_t

``--data one-circle``: every scene is one large red circle on white in a random cell, so
the position is the only thing left to learn (with ``--scratch``: the only thing to
learn besides drawing that circle); ``one-object``: one object of any colour,
shape and size on any background; ``drill``: half one-circle, half training scenes;
``world``: the training scenes (1-3 objects). Captions
always name the position. Starts from the work folder's EMA weights (or, with
``--scratch``, from random ones); writes nothing there. ``--minutes 0`` measures the
work folder's own weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import lusd.shapes.world as world  # noqa: E402
from lusd.tokenizer import clip_tokenizer  # noqa: E402
from shapes_lab import unet_stage, vae_stage  # noqa: E402
from shapes_lab.models import Arch, build_scheduler, build_text_encoder, build_unet  # noqa: E402

log = logging.getLogger("position_finetune")


def one_circle(rng, n_objects=None) -> world.Scene:
    return unet_stage.position_drill_scene(rng)


_sample_scene, _caption_words = world.sample_scene, world.training_caption_words


def one_object(rng, n_objects=None) -> world.Scene:
    return _sample_scene(rng, 1)


def drill(rng, n_objects=None) -> world.Scene:
    return one_circle(rng) if rng.random() < 0.5 else _sample_scene(rng)


DATA = {"one-circle": one_circle, "one-object": one_object, "drill": drill}


def always_position(scene: world.Scene, rng, p_position=None) -> list[tuple[str, int]]:
    return _caption_words(scene, rng, p_position=0.0)


def finetune(
    work: Path,
    minutes: float,
    t_min: int,
    data: str,
    x0_cap: float = 0.0,
    scratch: bool = False,
    lr: float | None = None,
    offset_noise: float = 0.0,
    seed: int = 123,
):
    """The fine-tuned (unet, text encoder) and the number of steps taken."""
    torch.manual_seed(seed)
    world.training_caption_words = always_position  # LatentCache looks these up at call time
    world.sample_scene = DATA.get(data, _sample_scene)
    arch = Arch.from_dict(json.loads((work / "arch.json").read_text()))
    vae = vae_stage.load_vae(work, arch)
    scale = float((work / "unet" / "scaling_factor.txt").read_text())
    model = torch.nn.ModuleDict({"unet": build_unet(arch), "text": build_text_encoder(arch)})
    if not scratch:
        model.load_state_dict(torch.load(work / "unet" / "ckpt.pt", weights_only=False)["ema"])
    lr = lr or (1e-3 if scratch else 3e-4)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = build_scheduler(arch)
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    tok = clip_tokenizer()
    cache = unet_stage.LatentCache(vae, scale, seed, 32)
    started, step = time.monotonic(), 0
    warmup = 100 if scratch else 1
    while time.monotonic() - started < minutes * 60:
        opt.param_groups[0]["lr"] = lr * min(1.0, (step + 1) / warmup)
        z, caps, _, _ = cache.get(step)
        ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        t = torch.randint(t_min, 1000, (z.shape[0],))
        noise = unet_stage._training_noise(z, offset_noise)
        cond = model["text"](ids.input_ids)[0]
        pred = model["unet"](sched.add_noise(z, noise, t), t, encoder_hidden_states=cond).sample
        w, target = unet_stage._loss_weight_and_target(sched, snr[t], z, noise, t)
        if x0_cap > 0:  # epsilon loss / SNR = x0 loss: the steps where the layout is hidden
            w = w * (1 / snr[t]).clamp(1.0, x0_cap).float()
        loss = (w * F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log.info("step %d, %.0f s, loss %.4f", step, time.monotonic() - started, loss.item())
    return model, arch, step


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="a `lusd lab train-shapes` work folder")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--t-min", type=int, default=0, help="sample t from [t_min, 1000)")
    p.add_argument("--data", choices=("world", *DATA), default="world")
    p.add_argument(
        "--x0-cap", type=float, default=0.0, help="weight low-SNR steps like an x0 loss, capped"
    )
    p.add_argument(
        "--scratch", action="store_true", help="start from random weights (lr 1e-3), not the EMA"
    )
    p.add_argument("--lr", type=float, help="default 3e-4 (1e-3 with --scratch)")
    p.add_argument(
        "--offset-noise", type=float, default=0.0, help="the recipe's low-frequency noise"
    )
    p.add_argument("--seed", type=int, default=123, help="data, noise and initial weights (torch)")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the position probe")
    p.add_argument(
        "--eval-prompts", type=int, default=0, help="also judge N seeded prompts (30 steps)"
    )
    p.add_argument(
        "--save-work", type=Path, help="keep the result as a work folder (a new path) to go on from"
    )
    p.add_argument("--name", default="position_finetune")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from lusd.shapes.generate import load_t2i
    from shapes_lab.export import export_model
    from shapes_lab.model_quality import generation_eval, position_probe

    model, arch, steps = finetune(
        args.work,
        args.minutes,
        args.t_min,
        args.data,
        x0_cap=args.x0_cap,
        scratch=args.scratch,
        lr=args.lr,
        offset_noise=args.offset_noise,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_work = args.save_work or Path(tmp)
        (tmp_work / "unet").mkdir(parents=True)
        (tmp_work / "vae").symlink_to((args.work / "vae").resolve())
        (tmp_work / "arch.json").write_text((args.work / "arch.json").read_text())
        state = model.state_dict()
        torch.save({"model": state, "ema": state}, tmp_work / "unet" / "ckpt.pt")
        (tmp_work / "unet" / "scaling_factor.txt").write_text(
            (args.work / "unet" / "scaling_factor.txt").read_text()
        )
        folder = export_model(tmp_work, arch, tmp_work / "model", lusd_config={})
        pipe = load_t2i(folder)
        probe = position_probe(pipe, seeds=args.seeds)
        quality = generation_eval(pipe, args.eval_prompts, steps=30)[0] if args.eval_prompts else {}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {**settings, "steps": steps, "position_probe": probe, "generation": quality}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    log.info("position probe %s, generation %s", probe, quality)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
