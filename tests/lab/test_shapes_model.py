"""The shipped shapes model: layout, size, loading through the SD path; the training script."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from lusd.shapes import SHAPES_MODEL_DIR
from tests.support.shapes_arch import CROSS_ATTENTION_AT_16, TINY_ARCH, tiny_unet_arch

# Floors for the shipped weights, well below what docs/shapes-model.md measured (VAE
# read-back 97.4% on 500 scenes; 83% of single-object prompts drawn right, positions
# included; the demo's edits at seed 0): they catch a broken model or code path, not noise.
VAE_FLOOR, SINGLE_FLOOR, GEN_PROMPTS, DEMO_FLOOR = 0.93, 0.6, 40, 2


def test_shipped_folder_layout_and_size():
    names = {p.relative_to(SHAPES_MODEL_DIR).as_posix() for p in SHAPES_MODEL_DIR.rglob("*")}
    for need in (
        "model_index.json",
        "lusd_config.json",
        "scheduler/scheduler_config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
    ):
        assert need in names, need
    assert not [n for n in names if n.endswith((".bin", ".pt", ".ckpt", ".pth"))]
    size = sum(p.stat().st_size for p in SHAPES_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 30e6


def test_loads_through_the_sd_path_with_its_own_config():
    from lusd.config import EditConfig
    from lusd.loading import load_pipeline

    pipe = load_pipeline(None, "cpu")
    values = json.loads((SHAPES_MODEL_DIR / "lusd_config.json").read_text())
    cfg = pipe.default_config
    assert isinstance(cfg, EditConfig)
    assert all(getattr(cfg, k) == v for k, v in values.items() if not k.startswith("_"))
    assert pipe.unet.dtype == torch.float32
    # cross-attention at every level (16x16, 8x8, 4x4); the mask reads the 16x16 maps
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.latent_channels == 4
    assert all(kind.startswith("CrossAttn") for kind in pipe.unet.config.down_block_types)
    assert cfg.mask_cross_factor == cfg.mask_self_factor == 1


def test_the_recipe_sizes_build_the_shipped_networks():
    """The recipe's first run (no --arch) and its second (--arch SHIPPED_LAYOUT, warm-started
    from the first) train networks of the shipped model's shapes."""
    from safetensors.torch import load_file

    from shapes_lab.models import SHIPPED_LAYOUT, Arch, build_text_encoder, build_unet, build_vae
    from shapes_lab.train import parse_args

    first = json.loads(parse_args([]).arch)
    arch = Arch.from_dict({**first, **SHIPPED_LAYOUT})
    first_unet = build_unet(Arch.from_dict(first)).state_dict()
    shipped_unet = build_unet(arch).state_dict()
    assert all(shipped_unet[k].shape == v.shape for k, v in first_unet.items())  # warm start fits
    for build, folder in (
        (build_unet, "unet"),
        (build_vae, "vae"),
        (build_text_encoder, "text_encoder"),
    ):
        (weights,) = (SHAPES_MODEL_DIR / folder).glob("*.safetensors")
        shipped = {k: tuple(v.shape) for k, v in load_file(weights).items()}
        built = {k: tuple(v.shape) for k, v in build(arch).state_dict().items()}
        assert built == shipped, folder


def test_diffusers_loads_it_and_generates_64px():
    from lusd.shapes.generate import generate, load_t2i

    pipe = load_t2i()
    images = generate(
        pipe, ["a red circle", "a blue square on a black background"], [0, 1], steps=3
    )
    assert [im.size for im in images] == [(64, 64), (64, 64)]


def test_loss_targets_and_weights_follow_the_prediction_type():
    from shapes_lab.models import build_scheduler
    from shapes_lab.unet_stage import _loss_weight_and_target

    z, noise = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([5, 500, 999])
    from shapes_lab.models import Arch

    for sched in (build_scheduler(Arch(noise_schedule="linear-v")), build_scheduler()):
        abar = sched.alphas_cumprod
        snr = abar / (1 - abar)
        w, target = _loss_weight_and_target(sched, snr[t], z, noise, t)
        assert w[2] == pytest.approx(1.0) and w[0] < 0.5  # low SNR counts fully, easy steps less
        if sched.config.prediction_type == "v_prediction":
            a = abar[t].view(-1, 1, 1, 1)
            assert torch.allclose(target, a.sqrt() * noise - (1 - a).sqrt() * z, atol=1e-6)
        else:
            assert target is noise


class _PixelVAE(torch.nn.Module):
    """Stands in for the VAE: 'encodes' an image to its 4x-downsampled first 4 channels."""

    def encode(self, x):
        from types import SimpleNamespace

        z = torch.nn.functional.avg_pool2d(torch.cat([x, x[:, :1]], 1), 4)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=z, std=torch.zeros_like(z)))


def test_latent_cache_curriculum_names_the_position_of_one_red_circle():
    from lusd.shapes.oracle import parse_caption
    from shapes_lab.unet_stage import LatentCache

    cache = LatentCache(_PixelVAE(), 1.0, seed=0, batch=32, position_steps=(16, 32))
    cells = set()
    for step in range(16, 32):  # curriculum: one red circle, its position always named
        caps = cache.get(step).captions
        assert cache.in_curriculum(step)  # the trainer also drops the low-frequency noise
        assert {(s.background, len(s.objects)) for s in cache._scenes} == {("white", 1)}
        for cap in filter(None, caps):
            (obj,), _ = parse_caption(cap)
            assert (obj.color, obj.shape) == ("red", "circle") and obj.cell is not None, cap
            cells.add(obj.cell)
    assert cells == set(range(9))
    counts, unnamed = set(), 0
    for step in [*range(16), *range(32, 48)]:  # else the full mix, usual clause dropout
        caps = cache.get(step).captions
        assert not cache.in_curriculum(step)
        counts |= {len(s.objects) for s in cache._scenes}
        unnamed += sum(o.cell is None for c in filter(None, caps) for o in parse_caption(c)[0])
    assert counts == {1, 2, 3} and unnamed > 0
    assert [s for s in range(48) if cache.starts_phase(s)] == [16, 32]  # fresh Adam moments
    late = LatentCache(_PixelVAE(), 1.0, seed=0, batch=32, position_steps=(3000, 4500))
    assert [s for s in range(2990, 4600) if late.starts_phase(s)] == [3000, 4504]  # blocks of 8


def test_ground_words_parse_as_word_kinds():
    import argparse

    from shapes_lab.train import parse_args, word_kinds

    assert word_kinds("position, color") == ("position", "color")
    assert parse_args([]).ground_words == ("position", "shape")  # the recipe's
    for bad in ("", "position,bogus", ","):
        with pytest.raises(argparse.ArgumentTypeError, match="word kinds"):
            word_kinds(bad)


def test_grounding_window_must_end_after_it_starts(capsys):
    from shapes_lab.train import parse_args

    assert parse_args(["--ground-from", "10", "--ground-until", "20"]).ground_until == 20
    assert parse_args(["--ground-from", "10", "--ground-until", "0"]).ground_until == 0  # never
    with pytest.raises(SystemExit):
        parse_args(["--ground-from", "10", "--ground-until", "10"])
    assert "--ground-until (10) must be a later step" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the recipe's window ends at 3500
        parse_args(["--ground-from", "4000"])
    err = capsys.readouterr().err
    assert "--ground-until 0 grounds to the end" in err and err.count("\n") == 1  # one line
    assert parse_args(["--ground-min-t", "600"]).ground_min_t == 600
    with pytest.raises(SystemExit):
        parse_args(["--ground-min-t", "1000"])
    assert "--ground-min-t must be a timestep" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--ground-min-side", "0"])
    assert "--ground-min-side must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # late words need an end of the full grounding
        parse_args(["--ground-until", "0", "--ground-late-words", "position"])
    assert "--ground-late-words needs a --ground-until" in capsys.readouterr().err


def test_grounded_words_follow_the_window():
    from shapes_lab.train import parse_args
    from shapes_lab.unet_stage import ground_words_at

    recipe = parse_args([])
    assert ground_words_at(recipe, 0) == ground_words_at(recipe, 3499) == ("position", "shape")
    assert ground_words_at(recipe, 3500) == ground_words_at(recipe, 10**6) == ("position",)
    plain_tail = parse_args(["--ground-late-words", "none"])
    assert ground_words_at(plain_tail, 3499) == ("position", "shape")
    assert ground_words_at(plain_tail, 3500) == ()  # after the window: the epsilon loss alone
    assert ground_words_at(parse_args(["--ground-until", "0"]), 10**6) == ("position", "shape")
    late = parse_args(["--ground-from", "10", "--ground-late-words", "position"])
    assert ground_words_at(late, 9) == ()
    assert ground_words_at(late, 10) == ("position", "shape")
    assert ground_words_at(late, 3500) == ground_words_at(late, 10**6) == ("position",)
    never = parse_args(["--ground-token", "0", "--ground-late-words", "position"])
    assert ground_words_at(never, 0) == ground_words_at(never, 5000) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:2400", (0, 2400)), ("3700:", (3700, sys.maxsize)), (":5", (0, 5)), ("5", None),
     ("9:3", None), ("a:b", None), ("-1:4", None)],
)  # fmt: skip
def test_position_steps_parse_as_a_step_range(text, expected):
    import argparse

    from shapes_lab.train import step_range

    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError, match="START:END"):
            step_range(text)
    else:
        assert step_range(text) == expected


def test_training_is_resumable_and_exports_an_sd_folder(tmp_path):
    from lusd.loading import load_pipeline
    from shapes_lab.train import main

    work, out = tmp_path / "work", tmp_path / "model"
    common = [
        "--work",
        str(work),
        "--arch",
        TINY_ARCH,
        "--no-progress",
        "--threads",
        "1",
        "--vae-batch",
        "2",
        "--unet-batch",
        "4",
        "--ckpt-minutes",
        "0",
    ]
    assert main([*common, "--stages", "vae", "--vae-steps", "3"]) == 0
    assert (work / "vae" / "DONE").read_text().strip() == "3"
    grounded = ["--ground-token", "0.2", "--ground-pixel", "0.02"]
    window = [*grounded, "--ground-from", "1", "--ground-until", "30", "--ground-min-t", "200"]
    window += ["--ground-min-side", "8"]
    assert main([*common, "--stages", "unet", "--unet-steps", "2", *window]) == 0
    (work / "unet" / "DONE").unlink()  # ask for more: resumes at step 2, not from scratch
    more = ["--stages", "unet,export", "--unet-steps", "50", "--out", str(out), *window]
    assert main([*common, *more, "--keep-checkpoints"]) == 0
    assert (work / "unet" / "DONE").read_text().strip() == "50"
    kept = sorted((work / "unet" / "kept").glob("*.pt"))  # none before the flag was given
    assert len(kept) >= 10 and kept[-1].name == "ckpt_000050.pt"
    for path in (kept[0], kept[len(kept) // 2], kept[-1]):  # each keeps its own step
        assert torch.load(path, weights_only=False)["step"] == int(path.stem.split("_")[1])
    header, *rows = (work / "unet" / "loss.csv").read_text().splitlines()
    assert header == "step,seconds,loss,mse,lr,token_loss,pixel_loss"
    logged = {int(r.split(",")[0]): r.split(",")[-2] for r in rows}
    # step 0 trained without grounding, steps 1-29 with it (from step 2 after the resume),
    # the steps from 30 on with the position words alone (the recipe's late words: a
    # logged term, which is 0 when no caption of the batch names a position)
    assert logged[1] == "nan" and float(logged[25]) > 0 and float(logged[50]) >= 0
    pipe = load_pipeline(str(out), "cpu")
    assert (
        pipe.default_config.num_steps
        == json.loads((out / "lusd_config.json").read_text())["num_steps"]
    )
    assert abs(pipe.vae.config.scaling_factor - 0.18215) > 1e-6  # measured, not SD's
    assert pipe.scheduler.config.prediction_type == "v_prediction"  # the arch's schedule


def test_training_takes_a_trained_vae_instead_of_training_one(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from lusd.errors import ConfigError, ModelLoadError
    from shapes_lab.models import Arch, build_vae
    from shapes_lab.train import main

    source = tmp_path / "trained"
    build_vae(Arch(vae_channels=(8, 8, 8), vae_groups=4)).save_pretrained(source / "vae")
    work, out = tmp_path / "work", tmp_path / "model"
    unet_only = json.dumps(tiny_unet_arch())
    common = ["--work", str(work), "--arch", unet_only, "--no-progress", "--threads", "1"]
    common += ["--unet-batch", "4", "--unet-steps", "2", "--out", str(out)]
    assert main([*common, "--vae-from", str(source)]) == 0  # stages: unet,export
    assert (work / "unet" / "DONE").read_text().strip() == "2"
    assert json.loads((work / "arch.json").read_text())["vae_channels"] == [8, 8, 8]
    assert main([*common, "--vae-from", str(source)]) == 0  # resumed: nothing left to do
    exported = AutoencoderKL.from_pretrained(out / "vae").state_dict()
    for name, weight in AutoencoderKL.from_pretrained(source / "vae").state_dict().items():
        torch.testing.assert_close(exported[name].float(), weight, rtol=1e-3, atol=1e-4)

    for stages, error in (("vae,unet", "leave vae out"), ("unet,unte", "unknown --stages unte")):
        with pytest.raises(SystemExit):
            main([*common, "--vae-from", str(source), "--stages", stages])
        assert error in capsys.readouterr().err
    with pytest.raises(ModelLoadError, match="no VAE here"):
        main(["--work", str(tmp_path / "w1"), "--vae-from", str(tmp_path)])
    build_vae(Arch(vae_channels=(8, 8), vae_groups=4)).save_pretrained(tmp_path / "f2")
    with pytest.raises(ModelLoadError, match="layout"):
        main(["--work", str(tmp_path / "w2"), "--vae-from", str(tmp_path / "f2")])
    (tmp_path / "w3").mkdir()
    (tmp_path / "w3" / "arch.json").write_text(TINY_ARCH)  # a run begun with other sizes
    with pytest.raises(ConfigError, match="another VAE"):
        main(["--work", str(tmp_path / "w3"), "--vae-from", str(source)])


def test_demo_cases_cover_add_colour_shape():
    from lusd.shapes.demo import demo_cases

    assert [c.kind for c in demo_cases()] == ["add", "color", "shape"]


@pytest.mark.parametrize("n", [4])
def test_eval_prompts_are_seeded(n):
    from lusd.shapes.world import Obj, Scene, render
    from shapes_lab.model_quality import eval_prompts, judge, summarize

    assert eval_prompts(n, 1) == eval_prompts(n, 1)
    img = render(Scene("black", (Obj("green", "square", "small", 4),)))
    assert judge(img, "a green square on a black background").ok
    assert not judge(img, "a green square on a white background").ok
    assert judge(img, "a green square on a white background").objects_ok
    misplaced = judge(img, "a small green square on the top left")
    assert not misplaced.objects_ok and misplaced.objects_ok_anywhere
    assert misplaced.errors == ("cell",)
    wrong = judge(img, "a small red square on the top left")
    assert not wrong.objects_ok_anywhere and wrong.errors == ("color", "cell")
    assert judge(img, "a large green circle").errors == ("shape", "size")
    assert judge(img, "a green square and a red circle").errors == ("count",)
    assert judge(render(Scene("black")), "a green square").errors == ("count",)
    summary = summarize([misplaced, wrong, judge(img, "a green square")])
    assert summary["single_object_errors"] == pytest.approx(
        {"count": 0, "color": 1 / 3, "shape": 0, "size": 0, "cell": 2 / 3}
    )


def test_two_object_judgements_say_what_went_wrong():
    from lusd.shapes.world import Obj, Scene, render
    from shapes_lab.model_quality import judge, summarize

    img = render(
        Scene("white", (Obj("red", "circle", "large", 0), Obj("blue", "square", "large", 8)))
    )
    assert judge(img, "a red circle on the top left and a blue square").errors == ()
    swapped = judge(img, "a red square and a blue circle")
    assert swapped.errors == ("binding",)
    assert judge(img, "a red circle and a green square").errors == ("color",)
    assert judge(img, "a small red circle and a blue triangle").errors == ("shape", "size")
    moved = judge(img, "a red circle on the bottom right and a blue square on the top left")
    assert moved.errors == ("cell",) and moved.objects_ok_anywhere
    too_few = judge(img, "a red circle and a blue square and a red triangle")
    assert too_few.errors == ("count",)
    summary = summarize([swapped, moved, judge(img, "a red circle and a blue square")])
    assert summary["two_object"] == pytest.approx(1 / 3)
    assert summary["two_object_errors"] == pytest.approx(
        {"count": 0, "color": 0, "shape": 0, "size": 0, "binding": 1 / 3, "cell": 1 / 3}
    )


def test_stray_pixels_count_blobs_but_not_edges():
    import numpy as np

    from lusd.shapes.world import Obj, Scene, render
    from shapes_lab.model_quality import stray_pixels

    scene = render(Scene("white", (Obj("red", "square", "large", 4),)))
    assert stray_pixels(scene, scene) == 0
    blob = np.array(scene)
    blob[5:8, 5:8] = (0, 0, 255)  # a 3x3 blue blob in the white background
    assert stray_pixels(scene, blob) == 9
    shifted = np.roll(np.array(scene), 1, axis=1)  # every edge moves by one pixel
    assert stray_pixels(scene, shifted) == 0


class _FakeT2I:
    """Stands in for a text-to-image pipeline: draws the object where the prompt or the
    seed says (the probe only reads ``.images`` of ``pipe(prompts, generator=...)``)."""

    def __init__(self, follow_prompt: bool) -> None:
        self.follow_prompt = follow_prompt

    def __call__(self, prompts, generator, **_):
        from types import SimpleNamespace

        from lusd.shapes.oracle import parse_caption
        from lusd.shapes.world import Obj, Scene, render

        images = []
        for prompt, gen in zip(prompts, generator, strict=True):
            cell = int(torch.randint(0, 9, (1,), generator=gen))
            if self.follow_prompt:
                cell = parse_caption(prompt)[0][0].cell
            images.append(render(Scene("white", (Obj("red", "circle", "large", cell),))))
        return SimpleNamespace(images=images)


def test_position_probe_tells_prompt_from_noise():
    from shapes_lab.model_quality import position_probe

    obeys = position_probe(_FakeT2I(follow_prompt=True), seeds=2)
    assert obeys["asked_cell"] == 1.0 and obeys["seed_cell"] == pytest.approx(1 / 9)
    ignores = position_probe(_FakeT2I(follow_prompt=False), seeds=2)
    assert ignores["seed_cell"] == 1.0 and ignores["asked_cell"] <= 2 / 18


def test_the_shipped_model_keeps_its_measured_quality():
    """A guard for the shipped weights and the whole SD code path (docs/shapes-model.md has
    the full measurement): VAE read-back, then text-to-image on unseen seeded prompts."""
    from lusd.shapes.generate import load_t2i
    from shapes_lab.model_quality import generation_eval, vae_quality

    pipe = load_t2i()
    vae = vae_quality(pipe.vae, n=100, seed=99)
    assert vae["readback"] >= VAE_FLOOR and vae["images_with_artefacts"] <= 0.02
    summary, _, _ = generation_eval(pipe, n=GEN_PROMPTS, seed=77, steps=25)
    assert summary["single_object"] >= SINGLE_FLOOR, summary  # positions included


def test_the_demo_edits_succeed_with_the_shipped_model():
    from lusd.loading import load_pipeline
    from lusd.shapes.demo import run_demo

    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    results = run_demo(pipe, seed=0)
    assert sum(r.success for r in results) >= DEMO_FLOOR, [(r.case.kind, r.after) for r in results]


def test_training_curves_plot_the_stages_that_have_a_log(tmp_path):
    from PIL import Image

    from shapes_lab.curves import plot_curves

    with pytest.raises(FileNotFoundError, match="loss.csv"):
        plot_curves(tmp_path, tmp_path / "none.png")
    (tmp_path / "unet").mkdir()
    log = "step,seconds,loss,mse,lr,token_loss,pixel_loss\n0,1.0,1.0,1.0,0.001,0.5,0.4\n"
    log += "25,60.0,0.5,0.4,0.001,nan,nan\n"
    (tmp_path / "unet" / "loss.csv").write_text(log)
    one = Image.open(plot_curves(tmp_path, tmp_path / "one.png")).size
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "loss.csv").write_text(
        "step,seconds,l1,mse\n0,1.0,0.3,0.2\n9,30.0,0.1,0.05\n"
    )
    two = Image.open(plot_curves(tmp_path, tmp_path / "two.png")).size
    assert two[0] > 1.8 * one[0] and two[1] == one[1]  # a panel per logged stage


def test_training_with_self_attention_grounding_logs_its_loss(tmp_path):
    from shapes_lab.models import Arch, build_vae
    from shapes_lab.train import main

    source = tmp_path / "trained"
    build_vae(Arch(vae_channels=(8, 8, 8), vae_groups=4)).save_pretrained(source / "vae")
    tiny = tiny_unet_arch()
    tiny.update(CROSS_ATTENTION_AT_16)
    work = tmp_path / "work"
    args = ["--work", str(work), "--arch", json.dumps(tiny), "--no-progress", "--threads", "1"]
    args += ["--unet-batch", "4", "--unet-steps", "2", "--stages", "unet"]
    args += ["--vae-from", str(source), "--ground-self", "0.1", "--ground-until", "0"]
    assert main(args) == 0
    header, first, *_ = (work / "unet" / "loss.csv").read_text().splitlines()
    assert header.split(",")[-1] == "self_loss"
    assert 0 < float(first.split(",")[-1]) < 1  # (1 - share)^2 of a fresh model


def test_warm_start_adds_attention_blocks_that_start_as_the_identity(tmp_path):
    from lusd.errors import ModelLoadError
    from shapes_lab.models import SHIPPED_LAYOUT, Arch, build_text_encoder, build_unet
    from shapes_lab.warm_start import warm_start

    tiny = tiny_unet_arch()
    source_arch = Arch.from_dict(tiny)
    torch.manual_seed(0)
    source_unet, source_text = build_unet(source_arch), build_text_encoder(source_arch)
    source_unet.save_pretrained(tmp_path / "src" / "unet")
    source_text.save_pretrained(tmp_path / "src" / "text_encoder")

    wider = Arch.from_dict({**tiny, **SHIPPED_LAYOUT})
    unet, text = build_unet(wider), build_text_encoder(wider)
    added = warm_start(unet, text, tmp_path / "src")
    assert added == ["down_blocks.0.attentions.0", "up_blocks.2.attentions.0",
                     "up_blocks.2.attentions.1"]  # fmt: skip
    z, t, ids = torch.randn(2, 4, 16, 16), torch.tensor([10, 700]), torch.tensor([[49406, 320]])
    with torch.no_grad():
        cond = text(ids)[0].expand(2, -1, -1)
        torch.testing.assert_close(cond, source_text(ids)[0].expand(2, -1, -1))
        torch.testing.assert_close(
            unet(z, t, encoder_hidden_states=cond).sample,
            source_unet(z, t, encoder_hidden_states=cond).sample,
        )
    # the new blocks are trainable: their output projection gets a gradient
    unet(z, t, encoder_hidden_states=cond).sample.square().mean().backward()
    assert unet.get_submodule(added[0]).proj_out.weight.grad.abs().sum() > 0

    narrower = Arch.from_dict({**tiny, "unet_channels": [8, 16, 32]})
    with pytest.raises(ModelLoadError, match="does not fit"):
        warm_start(build_unet(narrower), build_text_encoder(narrower), tmp_path / "src")
    with pytest.raises(ModelLoadError, match="no trained UNet"):
        warm_start(unet, text, tmp_path)


def test_training_from_a_trained_unet_starts_from_its_weights(tmp_path):
    from diffusers import UNet2DConditionModel

    from shapes_lab.models import SHIPPED_LAYOUT, Arch, build_text_encoder, build_unet, build_vae
    from shapes_lab.train import main

    tiny = tiny_unet_arch()
    source = tmp_path / "trained"
    build_vae(Arch(vae_channels=(8, 8, 8), vae_groups=4)).save_pretrained(source / "vae")
    build_unet(Arch.from_dict(tiny)).save_pretrained(source / "unet")
    build_text_encoder(Arch.from_dict(tiny)).save_pretrained(source / "text_encoder")
    work = tmp_path / "work"
    wider = json.dumps({**tiny, **SHIPPED_LAYOUT})
    args = ["--work", str(work), "--arch", wider, "--no-progress", "--threads", "1"]
    args += ["--unet-batch", "4", "--unet-steps", "1", "--unet-lr", "0", "--stages", "unet"]
    assert main([*args, "--vae-from", str(source), "--unet-from", str(source)]) == 0
    trained = torch.load(work / "unet" / "ckpt.pt", weights_only=False)["ema"]
    sources = UNet2DConditionModel.from_pretrained(source / "unet").state_dict()
    # learning rate 0: the source's weights come through the step unchanged
    for name, weight in sources.items():
        torch.testing.assert_close(trained[f"unet.{name}"], weight)
    assert not trained["unet.down_blocks.0.attentions.0.proj_out.weight"].any()
