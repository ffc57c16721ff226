"""LUSD on SDXL: a tiny random SDXL in the exact diffusers layout, end to end.

Folder and single-file loading, prompt encoding against diffusers' own SDXL pipeline,
time ids from the image's size, the mask levels, edits with every preset, the CLI
(edit, info, batch), the web app's editor, the VAE's dtype, and the one-line refusal
of model families lusd does not support.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from lusd.cli import app
from lusd.errors import LUSDError, ModelLoadError, PromptError, UnsupportedModelError
from lusd.families import SD, SDXL, XLConditioning
from lusd.loading import load_pipeline
from lusd.pipeline import LUSDPipeline, LUSDXLPipeline
from tests.support.ldm_checkpoint import ldm_state_dict, sdxl_state_dict
from tests.support.tiny_sdxl import save_tiny_sdxl, tiny_sdxl_components

SOURCE, TARGET = "a cat", "a cat wearing a party hat"
WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return save_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "model")


@pytest.fixture(scope="module")
def sdxl_pipe(sdxl_dir):
    return load_pipeline(str(sdxl_dir), "cpu")


@pytest.fixture(scope="module")
def photo():
    """Not square and not a multiple of the model's size step: paste-back has work to do."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 44, 3), np.uint8))


def edit(pipe, image, seed=3, **kwargs):
    kwargs.setdefault("num_steps", 3)
    return pipe(image, SOURCE, TARGET, generator=torch.Generator().manual_seed(seed), **kwargs)


def record_unet_inputs(pipe):
    """Keep each UNet call's keyword arguments; returns (calls, hook handle)."""
    calls = []

    def hook(module, args, kwargs):
        calls.append({k: v for k, v in kwargs.items()})

    return calls, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


# ---- loading ---------------------------------------------------------------------------------


def test_folder_is_saved_by_diffusers_sdxl_pipeline(sdxl_dir):
    index = json.loads((sdxl_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    assert index["force_zeros_for_empty_prompt"] is True
    unet = json.loads((sdxl_dir / "unet" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text_time"
    assert unet["down_block_types"][0] == "DownBlock2D"  # no attention at full latent size


def test_loads_as_sdxl(sdxl_pipe):
    assert isinstance(sdxl_pipe, LUSDXLPipeline) and sdxl_pipe.family is SDXL
    assert sdxl_pipe.vae.dtype == torch.float32
    assert sdxl_pipe.tokenizer_2.pad_token == "!"
    assert sdxl_pipe.native_size == 32  # sample_size 16 x VAE factor 2 (SDXL: 128 x 8 = 1024)


def test_sd_folders_stay_sd(tiny_model_dir, tiny_pipe):
    assert type(tiny_pipe) is LUSDPipeline and tiny_pipe.family is SD
    assert tiny_pipe.text_encoder_2 is None
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert "text_encoder_2" not in index and "force_zeros_for_empty_prompt" not in index


def test_lusd_pipeline_from_pretrained_picks_the_family(sdxl_dir, tmp_path):
    pipe = LUSDPipeline.from_pretrained(sdxl_dir)
    assert isinstance(pipe, LUSDXLPipeline)
    pipe.save_pretrained(str(tmp_path / "again"))
    index = json.loads((tmp_path / "again" / "model_index.json").read_text())
    assert index["_class_name"] == "LUSDXLPipeline" and index["force_zeros_for_empty_prompt"]
    assert isinstance(load_pipeline(str(tmp_path / "again"), "cpu"), LUSDXLPipeline)


# ---- conditioning ----------------------------------------------------------------------------


def test_prompts_encode_as_diffusers_sdxl_does(sdxl_pipe):
    from diffusers import StableDiffusionXLPipeline

    parts = {n: getattr(sdxl_pipe, n) for n in SDXL.components}
    reference = StableDiffusionXLPipeline(
        **parts, image_encoder=None, feature_extractor=None, add_watermarker=False
    )
    hidden, negative, pooled, negative_pooled = reference.encode_prompt(
        TARGET, device="cpu", do_classifier_free_guidance=True
    )
    ours = sdxl_pipe.encode_prompt(TARGET)
    assert isinstance(ours, XLConditioning)
    assert ours.hidden.shape == (1, 77, 16 + 24) and ours.pooled.shape == (1, 8)
    assert torch.equal(ours.hidden, hidden) and torch.equal(ours.pooled, pooled)
    empty = SDXL.empty_prompt(sdxl_pipe)  # force_zeros_for_empty_prompt, as diffusers
    assert torch.equal(empty.hidden, negative) and torch.equal(empty.pooled, negative_pooled)
    assert not empty.hidden.any()

    time_ids = reference._get_add_time_ids(
        (30, 44), (0, 0), (32, 48), torch.float32, text_encoder_projection_dim=8
    )
    conditioned = SDXL.condition(
        sdxl_pipe, ours, original_size=(30, 44), crop_top_left=(0, 0), target_size=(32, 48)
    )
    assert torch.equal(conditioned.time_ids, time_ids)


def test_time_ids_come_from_the_image_and_working_size(sdxl_pipe, photo):
    calls, handle = record_unet_inputs(sdxl_pipe)
    try:
        out = edit(sdxl_pipe, photo, num_steps=2)
    finally:
        handle.remove()
    width, height = out.stats["working_size"]
    assert (width, height) == (32, 24)  # longer side 32 (native), sides multiples of 8
    for call in calls:
        added = call["added_cond_kwargs"]
        assert added["time_ids"].tolist() == [[30, 44, 0, 0, height, width]] * 2
        assert added["text_embeds"].shape == (2, 8)
        assert call["encoder_hidden_states"].shape == (2, 77, 40)


def test_mask_levels_follow_the_sd15_rule(sdxl_pipe):
    layers = sdxl_pipe.mask_layers
    assert (layers.cross_factor, layers.self_factor) == (4, 2)
    # latent/4: down_blocks.2 (2 x 3 transformer layers), mid (3), up_blocks.0 (3 x 3)
    assert len(layers.cross) == 18 and all(".attn2." in n for n in layers.cross)
    assert {n.split(".attentions")[0] for n in layers.cross} == {
        "down_blocks.2",
        "mid_block",
        "up_blocks.0",
    }
    # latent/2: down_blocks.1 (2 x 2 transformer layers), up_blocks.1 (3 x 2)
    assert len(layers.self_) == 10 and all(".attn1." in n for n in layers.self_)
    assert {n.split(".attentions")[0] for n in layers.self_} == {"down_blocks.1", "up_blocks.1"}


def test_focus_words_through_both_tokenizers(sdxl_pipe):
    words, indices = sdxl_pipe.focus_tokens(SOURCE, TARGET)
    assert words == ["party", "hat"] and indices == [5, 6]

    class Shifted:
        """tokenizer_2 seen through a model whose second tokenizer adds a token."""

        def __init__(self, inner):
            self.inner, self.model_max_length = inner, inner.model_max_length

        def tokenize(self, text):
            pieces = self.inner.tokenize(text)
            return ["x</w>", *pieces] if " " in text else pieces

    real = sdxl_pipe.tokenizer_2
    sdxl_pipe.tokenizer_2 = Shifted(real)
    try:
        with pytest.raises(PromptError, match="different token positions"):
            sdxl_pipe.focus_tokens(SOURCE, TARGET)
    finally:
        sdxl_pipe.tokenizer_2 = real


def test_prompt_length_is_checked_with_both_tokenizers(sdxl_pipe):
    with pytest.raises(PromptError, match="at most 77"):
        sdxl_pipe.check_inputs(SOURCE, " ".join(["cat"] * 80))


# ---- edits -----------------------------------------------------------------------------------


def test_edit_keeps_size_writes_mask_and_repeats(sdxl_pipe, photo):
    first, again = edit(sdxl_pipe, photo), edit(sdxl_pipe, photo)
    assert first.focus_words == ["party", "hat"] and first.stats["iterations"] == 3
    assert first.images[0].size == photo.size and first.masks[0].size == photo.size
    assert first.masks[0].mode == "L" and np.asarray(first.masks[0]).std() > 0
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert np.array_equal(np.asarray(first.masks[0]), np.asarray(again.masks[0]))
    other = edit(sdxl_pipe, photo, seed=4)
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))


@pytest.mark.parametrize("preset, rows", [("dds", 4), ("sds", 2)])
def test_baselines_run_with_zero_unconditional_embeddings(sdxl_pipe, photo, preset, rows):
    calls, handle = record_unet_inputs(sdxl_pipe)
    try:
        out = edit(sdxl_pipe, photo, preset=preset, num_steps=2)
    finally:
        handle.remove()
    assert out.images[0].size == photo.size and out.stats["unet_calls"] == 2
    assert np.isfinite(np.asarray(out.images[0], dtype=float)).all()
    hidden = calls[0]["encoder_hidden_states"]
    pooled = calls[0]["added_cond_kwargs"]["text_embeds"]
    assert hidden.shape[0] == rows
    empty_rows = [0, 2] if preset == "dds" else [0]  # [empty, source, empty, target] / [empty, t]
    for row in range(rows):
        is_empty = row in empty_rows
        assert (not hidden[row].any()) == is_empty and (not pooled[row].any()) == is_empty


def test_fp16_vae_is_upcast_unless_fixed(sdxl_dir, photo):
    pipe = LUSDPipeline.from_pretrained(sdxl_dir)
    pipe.vae.to(torch.float16)
    pipe.upcast_vae()
    assert pipe.vae.dtype == torch.float32  # force_upcast, as diffusers' SDXL pipeline
    pipe.vae.register_to_config(force_upcast=False)  # a fixed fp16 VAE keeps its dtype
    pipe.vae.to(torch.float16)
    pipe.upcast_vae()
    assert pipe.vae.dtype == torch.float16


def test_load_pipeline_keeps_a_fixed_half_vae(sdxl_dir, tmp_path):
    fixed = tmp_path / "fixed-vae"
    shutil.copytree(sdxl_dir, fixed)
    config_file = fixed / "vae" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "force_upcast": False}))
    assert load_pipeline(str(sdxl_dir), "cpu", "bfloat16").vae.dtype == torch.float32
    assert load_pipeline(str(fixed), "cpu", "bfloat16").vae.dtype == torch.bfloat16


# ---- single-file checkpoints -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sdxl_checkpoint(tmp_path_factory):
    parts = tiny_sdxl_components()  # the very weights sdxl_dir holds
    path = tmp_path_factory.mktemp("single-xl") / "tiny-sdxl.safetensors"
    save_file(sdxl_state_dict(*(parts[name] for name in WEIGHTED)), str(path))
    return path


@pytest.fixture(scope="module")
def sdxl_config_dir(sdxl_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("config-xl") / "tiny-sdxl-config"
    shutil.copytree(sdxl_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    return folder


def test_single_file_matches_the_folder(sdxl_checkpoint, sdxl_config_dir, sdxl_pipe, photo):
    single = load_pipeline(sdxl_checkpoint, "cpu", single_file_config=sdxl_config_dir)
    assert isinstance(single, LUSDXLPipeline)
    for name in WEIGHTED:
        expected, loaded = getattr(sdxl_pipe, name).state_dict(), getattr(single, name).state_dict()
        assert loaded.keys() == expected.keys(), name
        assert all(torch.equal(expected[k], loaded[k]) for k in expected), name
    assert single.config.force_zeros_for_empty_prompt is True
    a, b = edit(single, photo), edit(sdxl_pipe, photo)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert np.array_equal(np.asarray(a.masks[0]), np.asarray(b.masks[0]))


def test_single_file_family_must_match_the_config(
    sdxl_checkpoint, sdxl_config_dir, tiny_model_dir, tmp_path
):
    sd_config = tmp_path / "sd-config"
    shutil.copytree(tiny_model_dir, sd_config, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match="checkpoint is SDXL but --model-config") as info:
        load_pipeline(sdxl_checkpoint, "cpu", single_file_config=sd_config)
    assert "\n" not in str(info.value)

    from lusd.testing.tiny import tiny_components

    parts = tiny_components()
    sd_checkpoint = tmp_path / "tiny-sd.safetensors"
    save_file(
        ldm_state_dict(parts["unet"], parts["vae"], parts["text_encoder"]), str(sd_checkpoint)
    )
    with pytest.raises(ModelLoadError, match="is Stable Diffusion 1.x/2.x but"):
        load_pipeline(sd_checkpoint, "cpu", single_file_config=sdxl_config_dir)


# ---- CLI and app -----------------------------------------------------------------------------


def test_cli_edit_on_sdxl_folder_and_single_file(
    sdxl_dir, sdxl_checkpoint, sdxl_config_dir, photo, tmp_path
):
    source = tmp_path / "photo.png"
    photo.save(source)
    runner = CliRunner()
    for model in ([str(sdxl_dir)], [str(sdxl_checkpoint), "--model-config", str(sdxl_config_dir)]):
        out, mask = tmp_path / "out.png", tmp_path / "mask.png"
        args = ["edit", str(source), "-s", SOURCE, "-t", TARGET, "--steps", "2"]
        result = runner.invoke(
            app, [*args, "-o", str(out), "--save-mask", str(mask), "--model"] + model
        )
        assert result.exit_code == 0, result.output + result.stderr
        assert "focus: party, hat" in result.output
        assert Image.open(out).size == photo.size and Image.open(mask).size == photo.size


def test_cli_info_on_sdxl(sdxl_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(sdxl_dir), "--no-estimate", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["family"] == "sdxl" and report["family_name"] == "SDXL"
    assert set(report["components"]) == set(WEIGHTED)
    assert report["components"]["text_encoder_2"]["class"] == "CLIPTextModelWithProjection"
    assert report["mask"] == {
        "cross_factor": 4,
        "cross_layers": 18,
        "self_factor": 2,
        "self_layers": 10,
        "native_latent": 16,
        "cross_grid": 4,
        "self_grid": 8,
        "attention_factors": [2, 4],
    }
    text = runner.invoke(app, ["info", str(sdxl_dir), "--no-estimate"])
    assert text.exit_code == 0 and "family: SDXL" in text.output
    assert "cross-attention at latent/4 (18 layers)" in text.output
    assert "self-attention at latent/2 (10 layers)" in text.output


def test_cli_batch_on_sdxl(sdxl_dir, photo, tmp_path):
    photo.save(tmp_path / "photo.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"image,source_prompt,target_prompt,num_steps\nphoto.png,{SOURCE},{TARGET},2\n"
    )
    out = tmp_path / "out"
    args = ["batch", str(manifest), "-o", str(out), "--model", str(sdxl_dir), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + result.stderr
    with sqlite3.connect(out / "journal.sqlite") as db:
        state, iterations = db.execute("select state, iterations from jobs").fetchone()
    assert state == "done" and iterations == 2


def test_web_app_editor_on_sdxl(sdxl_pipe, photo, tmp_path):
    from lusd.web.editing import AppSettings, Editor

    source = tmp_path / "photo.png"
    photo.save(source)
    settings = AppSettings(base_overrides={"num_steps": 4}, model_name="tiny-sdxl")
    record = Editor(sdxl_pipe, settings, tmp_path / "work").run(
        str(source), SOURCE, TARGET, "", 1, 0
    )
    assert record.focus_words == ("party", "hat") and record.iterations == 2
    assert Image.open(record.result_path).size == photo.size


# ---- unsupported families --------------------------------------------------------------------


def fake_folder(root, index: dict):
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    for name, value in index.items():
        if isinstance(value, list) and value[0] is not None:
            (root / name).mkdir()
    return root


UNSUPPORTED = {
    "sd3": (
        {
            "_class_name": "StableDiffusion3Pipeline",
            "transformer": ["diffusers", "SD3Transformer2DModel"],
            "text_encoder_3": ["transformers", "T5EncoderModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "Stable Diffusion 3 (StableDiffusion3Pipeline)",
    ),
    "flux": (
        {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]},
        "FLUX (FluxPipeline)",
    ),
    "controlnet": (
        {
            "_class_name": "StableDiffusionControlNetPipeline",
            "controlnet": ["diffusers", "ControlNetModel"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
        },
        "a ControlNet pipeline",
    ),
    "controlnet-by-component": (
        {"_class_name": "MyPipeline", "controlnet": ["diffusers", "ControlNetModel"]},
        "a ControlNet pipeline (MyPipeline)",
    ),
    "refiner": (
        {
            "_class_name": "StableDiffusionXLImg2ImgPipeline",
            "text_encoder": [None, None],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "unet": ["diffusers", "UNet2DConditionModel"],
        },
        "an SDXL refiner",
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_unsupported_families_get_one_line(kind, tmp_path):
    index, what = UNSUPPORTED[kind]
    folder = fake_folder(tmp_path / kind, index)
    with pytest.raises(UnsupportedModelError) as info:
        load_pipeline(str(folder), "cpu")
    message = str(info.value)
    assert isinstance(info.value, LUSDError) and "\n" not in message
    assert what in message and "Stable Diffusion 1.x/2.x and SDXL" in message
    with pytest.raises(UnsupportedModelError):
        LUSDPipeline.from_pretrained(folder)

    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16)).save(picture)
    result = CliRunner().invoke(app, ["edit", str(picture), "-t", TARGET, "--model", str(folder)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:")
    assert "SDXL" in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(
    "key, what",
    [
        ("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "Stable Diffusion 3"),
        ("double_blocks.0.img_attn.qkv.weight", "FLUX"),
        ("control_model.input_blocks.0.0.weight", "a ControlNet"),
    ],
)
def test_unsupported_single_files_get_one_line(key, what, sdxl_config_dir, tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({key: torch.zeros(1)}, str(path))
    with pytest.raises(UnsupportedModelError, match=f"{what} checkpoint is not supported"):
        load_pipeline(path, "cpu", single_file_config=sdxl_config_dir)
