"""Single-file (CompVis/LDM) checkpoints: exact weight round trip, edits, errors, the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from lusd.cli import app
from lusd.config import read_model_config
from lusd.errors import ModelLoadError
from lusd.loading import load_pipeline
from lusd.testing.tiny import tiny_components
from tests.support.ldm_checkpoint import ldm_state_dict

SOURCE, TARGET = "a cat", "a cat wearing a party hat"
WEIGHTED = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def originals():
    """The very components tiny_model_dir was saved from (seeded), never loaded from disk."""
    return tiny_components()


@pytest.fixture(scope="module")
def ldm_state(originals):
    state = ldm_state_dict(*(originals[name] for name in WEIGHTED))
    # real SD1.x checkpoints also carry the CLIP position ids buffer
    position_ids = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    state[position_ids] = torch.arange(77)[None]
    return state


@pytest.fixture(scope="module")
def checkpoint(ldm_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "tiny-sd.safetensors"
    save_file(ldm_state, str(path))
    return path


@pytest.fixture(scope="module")
def config_dir(tiny_model_dir, tmp_path_factory):
    """The diffusers folder with every weight file removed: configs, tokenizer, lusd_config."""
    folder = tmp_path_factory.mktemp("config") / "tiny-sd-config"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return folder


@pytest.fixture(scope="module")
def single_pipe(checkpoint, config_dir):
    return load_pipeline(checkpoint, "cpu", single_file_config=config_dir)


def test_checkpoint_is_in_ldm_layout(ldm_state, config_dir):
    assert not list(config_dir.rglob("*.safetensors"))
    prefixes = {key.split(".")[0] for key in ldm_state}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    for key in (
        "model.diffusion_model.input_blocks.1.1.proj_in.weight",
        "model.diffusion_model.input_blocks.2.0.op.weight",
        "model.diffusion_model.output_blocks.1.2.conv.weight",
        "model.diffusion_model.middle_block.2.emb_layers.1.weight",
        "first_stage_model.encoder.down.0.block.0.conv1.weight",
        "first_stage_model.decoder.up.1.upsample.conv.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight",
    ):
        assert key in ldm_state, key
    assert ldm_state["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)


def test_every_weight_round_trips_exactly(single_pipe, originals):
    for name in WEIGHTED:
        expected, loaded = originals[name].state_dict(), getattr(single_pipe, name).state_dict()
        assert loaded.keys() == expected.keys(), name
        different = [k for k in expected if not torch.equal(expected[k], loaded[k])]
        assert different == [], f"{name}: {different[:3]}"
        assert all(v.dtype == torch.float32 and not v.is_meta for v in loaded.values())


def public(config) -> dict:
    values = config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(config)
    return {k: v for k, v in values.items() if not k.startswith("_")}


def test_rest_of_the_model_comes_from_the_config_folder(single_pipe, tiny_pipe, config_dir):
    assert dict(single_pipe.scheduler.config) == dict(tiny_pipe.scheduler.config)
    assert single_pipe.scheduler.config.steps_offset == tiny_pipe.scheduler.config.steps_offset
    for name in WEIGHTED:
        single, folder = (public(getattr(pipe, name).config) for pipe in (single_pipe, tiny_pipe))
        assert single == folder, name
    assert single_pipe.vae.config.scaling_factor == tiny_pipe.vae.config.scaling_factor
    ids = single_pipe.tokenizer(TARGET).input_ids
    assert ids == tiny_pipe.tokenizer(TARGET).input_ids and len(ids) == 8
    assert single_pipe.default_config == read_model_config(config_dir)


def test_edit_matches_the_diffusers_folder_model(single_pipe, tiny_pipe):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40, 3), np.uint8))

    def edit(pipe):
        gen = torch.Generator().manual_seed(3)
        return pipe(image, SOURCE, TARGET, generator=gen, num_steps=3)

    single, folder = edit(single_pipe), edit(tiny_pipe)
    assert single.focus_words == ["party", "hat"] and single.stats["iterations"] == 3
    assert single.images[0].size == image.size
    assert np.array_equal(np.asarray(single.images[0]), np.asarray(folder.images[0]))
    assert np.array_equal(np.asarray(single.masks[0]), np.asarray(folder.masks[0]))


def one_line_load_error(*args, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_pipeline(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_no_config_says_to_pass_model_config(checkpoint):
    message = one_line_load_error(checkpoint, "cpu")
    assert "--model-config" in message and str(checkpoint) in message
    assert "huggingface" not in message.lower()


def test_bad_config_folders(checkpoint, tmp_path):
    missing = tmp_path / "nowhere"
    assert "not found" in one_line_load_error(checkpoint, "cpu", single_file_config=missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    message = one_line_load_error(checkpoint, "cpu", single_file_config=empty)
    assert "model_index.json" in message


def test_files_that_are_not_sd_checkpoints(config_dir, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    message = one_line_load_error(garbage, "cpu", single_file_config=config_dir)
    assert message.startswith("cannot load") and "not a valid .safetensors" in message
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1)}, str(lora))
    message = one_line_load_error(lora, "cpu", single_file_config=config_dir)
    assert "not a single-file Stable Diffusion checkpoint" in message


def test_checkpoint_missing_weights_is_refused(ldm_state, config_dir, tmp_path):
    partial = {k: v for k, v in ldm_state.items() if "input_blocks.1.1.proj_in" not in k}
    path = tmp_path / "partial.safetensors"
    save_file(partial, str(path))
    message = one_line_load_error(path, "cpu", single_file_config=config_dir)
    assert "weights missing from the checkpoint" in message and "--model-config" in message


def test_config_of_another_architecture_is_refused(checkpoint, config_dir, tmp_path):
    other = tmp_path / "other-config"
    shutil.copytree(config_dir, other)
    unet_config = other / "unet" / "config.json"
    values = json.loads(unet_config.read_text())
    values["cross_attention_dim"] = 32
    unet_config.write_text(json.dumps(values))
    message = one_line_load_error(checkpoint, "cpu", single_file_config=other)
    assert "does not fit the architecture" in message and "attn2.to_k.weight" in message
    assert "[8, 16]" in message and "[8, 32]" in message


def test_pickled_checkpoint_needs_allow_pickle(ldm_state, config_dir, originals, tmp_path):
    path = tmp_path / "tiny-sd.ckpt"
    torch.save({"state_dict": ldm_state}, path)
    assert "--allow-pickle" in one_line_load_error(path, "cpu", single_file_config=config_dir)
    pipe = load_pipeline(path, "cpu", allow_pickle=True, single_file_config=config_dir)
    assert torch.equal(pipe.unet.conv_out.weight, originals["unet"].conv_out.weight)


def test_cli_edit_with_model_config(checkpoint, config_dir, tmp_path):
    photo, out = tmp_path / "photo.png", tmp_path / "out.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 3), np.uint8)).save(photo)
    runner = CliRunner()
    base = ["edit", str(photo), "-s", SOURCE, "-t", TARGET, "--model", str(checkpoint)]
    result = runner.invoke(
        app, [*base, "--model-config", str(config_dir), "--steps", "2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert Image.open(out).size == (32, 24)

    refused = runner.invoke(app, [*base, "-o", str(tmp_path / "never.png")])
    assert refused.exit_code == 1 and "Traceback" not in refused.output + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--model-config" in lines[0]
    assert not (tmp_path / "never.png").exists()


def test_cli_batch_with_model_config(checkpoint, config_dir, tmp_path):
    import sqlite3

    (config_dir / "lusd_config.json").write_text(json.dumps({"num_steps": 2}))
    try:
        photo = tmp_path / "photo.png"
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(photo)
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"image,source_prompt,target_prompt\n{photo.name},{SOURCE},{TARGET}\n")
        out = tmp_path / "out"
        args = [
            "batch",
            str(manifest),
            "-o",
            str(out),
            "--model",
            str(checkpoint),
            "--model-config",
            str(config_dir),
            "--no-progress",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output + result.stderr
        with sqlite3.connect(out / "journal.sqlite") as db:
            state, iterations = db.execute("select state, iterations from jobs").fetchone()
        assert state == "done" and iterations == 2  # the config folder's defaults applied
    finally:
        (config_dir / "lusd_config.json").unlink()
