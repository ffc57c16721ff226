"""The whole pipeline on a tiny random SD-layout model, through the real loading path."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lusd.config import EditConfig
from lusd.errors import ConfigError, DeviceError, ModelLoadError, PromptError
from lusd.loading import load_pipeline

SOURCE, TARGET = "a cat", "a cat wearing a party hat"


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (45, 70, 3), dtype=np.uint8))


def edit(pipe, image, seed=0, **kwargs):
    kwargs.setdefault("num_steps", 6)
    return pipe(image, SOURCE, TARGET, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_edit_output_contract(tiny_pipe, photo):
    out = edit(tiny_pipe, photo)
    assert out.images[0].size == photo.size and out.masks[0].size == photo.size
    assert out.masks[0].mode == "L"
    assert out.focus_words == ["party", "hat"] and out.focus_indices == [5, 6]
    stats = out.stats
    assert stats["iterations"] == 6 and stats["unet_calls"] == 6 + stats["filter_retries"]
    assert (
        stats["config"]["num_steps"] == 6
        and stats["config_hash"] == EditConfig(num_steps=6).digest()
    )
    assert stats["working_size"] == [32, 24]  # longer side native (32), multiples of 8


def test_mask_levels_follow_the_config(tiny_pipe, photo):
    default = edit(tiny_pipe, photo, seed=3)
    assert (tiny_pipe.mask_layers.cross_factor, tiny_pipe.mask_layers.self_factor) == (4, 2)
    finer = edit(tiny_pipe, photo, seed=3, mask_cross_factor=2)
    layers = tiny_pipe.mask_layers_for(EditConfig(mask_cross_factor=2))
    assert layers.cross_factor == 2
    assert all(name.startswith(("down_blocks.1", "up_blocks.1")) for name in layers.cross)
    assert not np.array_equal(np.asarray(default.masks[0]), np.asarray(finer.masks[0]))
    again = edit(tiny_pipe, photo, seed=3)  # the pipeline kept nothing of the finer edit
    assert tiny_pipe.mask_layers.cross_factor == 4
    assert np.array_equal(np.asarray(default.masks[0]), np.asarray(again.masks[0]))
    with pytest.raises(ConfigError, match="power of two"):
        EditConfig(mask_cross_factor=3)


def test_config_hash_of_earlier_journals_survives_new_fields():
    config = EditConfig(num_steps=6)
    assert "mask_cross_factor" in config.to_dict()
    assert config.digest() != config.replace(mask_cross_factor=2).digest()
    # the hash of a config holding only 0.1.0's fields, as written by that version
    added = ("mask_cross_factor", "mask_self_factor", "retry_budget", "crop_margin")
    old = {k: v for k, v in config.to_dict().items() if k not in added}
    blob = json.dumps(old, sort_keys=True).encode()
    assert config.digest() == hashlib.sha256(blob).hexdigest()[:16]


def test_same_seed_same_output_and_seed_matters(tiny_pipe, photo):
    a, b = edit(tiny_pipe, photo, seed=1), edit(tiny_pipe, photo, seed=1)
    c = edit(tiny_pipe, photo, seed=2)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert np.array_equal(np.asarray(a.masks[0]), np.asarray(b.masks[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_paste_back_keeps_pixels_outside_the_mask(tiny_pipe, photo):
    out = edit(tiny_pipe, photo, num_steps=8, mask_threshold=0.6)
    same = np.all(np.asarray(out.images[0]) == np.asarray(photo), axis=-1)
    assert same.any() and not same.all()
    # exact identity wherever the paste-back weight is zero: mask empty on the left half
    mask = np.zeros((24, 32), dtype=np.float32)
    mask[8:16, 20:28] = 1.0
    decoded = np.full((24, 32, 3), 0.5, dtype=np.float32)
    cfg = EditConfig(mask_dilate=0.02, mask_feather=0.01)
    edited, mask_image = tiny_pipe._finish(photo, decoded, mask, cfg)
    left = np.asarray(edited)[:, :35]
    assert np.array_equal(left, np.asarray(photo)[:, :35])
    assert np.asarray(edited)[22, 52].tolist() == [128, 128, 128]
    assert mask_image.size == photo.size


def test_raw_output_and_output_types(tiny_pipe, photo):
    raw = edit(tiny_pipe, photo, paste_back=False)
    assert raw.images[0].size == (32, 24)
    as_np = edit(tiny_pipe, photo, output_type="np").images
    assert as_np.shape == (1, 45, 70, 3) and as_np.dtype == np.float32
    assert edit(tiny_pipe, photo, output_type="pt").images.shape == (1, 3, 45, 70)
    with pytest.raises(ConfigError):
        edit(tiny_pipe, photo, output_type="latent")


def test_presets_and_focus_override(tiny_pipe, photo):
    dds = edit(tiny_pipe, photo, preset="dds", num_steps=3)
    assert dds.focus_words == [] and dds.stats["unet_calls"] == 3
    assert dds.stats["config"]["guidance_scale"] == 7.5
    no_mask = edit(tiny_pipe, photo, preset="lusd-no-mask", num_steps=3)
    assert np.all(np.asarray(no_mask.masks[0]) == 255)
    hat = edit(tiny_pipe, photo, focus=["hat"], num_steps=3)
    assert hat.focus_words == ["hat"] and hat.focus_indices == [6]
    with pytest.raises(ConfigError, match="unknown preset"):
        edit(tiny_pipe, photo, preset="magic")
    with pytest.raises(ConfigError, match="unknown EditConfig"):
        edit(tiny_pipe, photo, stepz=3)


def test_prompt_checks(tiny_pipe, photo):
    with pytest.raises(PromptError, match="empty"):
        tiny_pipe(photo, SOURCE, "   ")
    with pytest.raises(PromptError, match="tokens long"):
        tiny_pipe(photo, SOURCE, "a cat " * 60)


def test_v_prediction_model_runs(tiny_vpred_model_dir, photo):
    pipe = load_pipeline(str(tiny_vpred_model_dir))
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    out = edit(pipe, photo, num_steps=3)
    assert out.images[0].size == photo.size


def test_bfloat16_on_cpu(tiny_model_dir, photo):
    pipe = load_pipeline(str(tiny_model_dir), "cpu", "bfloat16")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert edit(pipe, photo, num_steps=2).images[0].size == photo.size


def test_model_defaults_file_and_overrides(tiny_model_dir, tmp_path, photo):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "lusd_config.json").write_text(json.dumps({"num_steps": 4, "lambda_reg": 0.1}))
    pipe = load_pipeline(str(folder))
    assert pipe.default_config.num_steps == 4
    assert edit(pipe, photo, num_steps=4).stats["config"]["lambda_reg"] == 0.1
    out = pipe(photo, SOURCE, TARGET, lambda_reg=0.3)
    assert out.stats["iterations"] == 4 and out.stats["config"]["lambda_reg"] == 0.3
    # baselines keep their authors' values whatever the model file says
    assert pipe.resolve_config("dds", None, {}).lambda_reg == 0.0


def test_loads_a_folder_saved_by_stable_diffusion_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from lusd.testing.tiny import tiny_components

    sd = StableDiffusionPipeline(
        **tiny_components(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(str(tmp_path / "sd"))
    pipe = load_pipeline(str(tmp_path / "sd"))
    assert type(pipe).__name__ == "LUSDPipeline"


def test_bad_models_and_devices(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="not found"):
        load_pipeline(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text('{"_class_name": "X", "unet": ["a", "b"]}')
    with pytest.raises(ModelLoadError, match="missing vae"):
        load_pipeline(str(tmp_path / "other"))
    (tmp_path / "model.ckpt").write_bytes(b"not really")
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_pipeline(str(tmp_path / "model.ckpt"))
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_pipeline(str(tmp_path / "broken.safetensors"))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            load_pipeline(str(tiny_model_dir), device="cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        load_pipeline(str(tiny_model_dir), device="tpu9")
    with pytest.raises(DeviceError, match="float16 is not supported on CPU"):
        load_pipeline(str(tiny_model_dir), device="cpu", dtype="float16")


def test_pickled_only_folder_is_refused(tmp_path, tiny_model_dir):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    for part in ("unet", "vae", "text_encoder"):
        for weights in (folder / part).glob("*.safetensors"):
            torch.save(load_file(weights), weights.with_suffix(".bin"))
            weights.unlink()
    with pytest.raises(ModelLoadError, match="pickled"):
        load_pipeline(str(folder))


def test_model_config_only_for_single_files_and_hub_ids_with_dots(tiny_model_dir, tmp_path):
    from lusd.loading import _looks_like_local_path

    with pytest.raises(ModelLoadError, match="only for single-file"):
        load_pipeline(str(tiny_model_dir), single_file_config=str(tiny_model_dir))
    assert not _looks_like_local_path("runwayml/stable-diffusion-v1.5")
    assert _looks_like_local_path("./models/sd") and _looks_like_local_path("model.safetensors")


def test_one_call_edit_api(tiny_model_dir):
    import lusd

    image = np.zeros((32, 32, 3), dtype=np.uint8)
    out = lusd.edit(image, "a cat", "a cat wearing a hat", model=str(tiny_model_dir), num_steps=2)
    assert out.images[0].size == (32, 32) and out.focus_words == ["hat"]


def test_an_explicit_config_starts_every_preset(tiny_pipe):
    mine = EditConfig(t_min=100, mask_threshold=0.5)
    dds = tiny_pipe.resolve_config("dds", mine, {})
    assert dds.method == "dds" and dds.t_min == 100 and dds.mask_threshold == 0.5
    assert dds.lambda_reg == 0.0 and dds.guidance_scale == 7.5
    assert tiny_pipe.resolve_config("lusd", mine, {"num_steps": 5}).t_min == 100


def test_model_config_file_errors(tmp_path):
    from lusd.config import read_model_config

    assert read_model_config(tmp_path) == EditConfig()
    (tmp_path / "lusd_config.json").write_text('{"_note": "tuned", "lambda_reg": 0.1}')
    assert read_model_config(tmp_path).lambda_reg == 0.1
    (tmp_path / "lusd_config.json").write_text('{"lambda_regg": 0.1}')
    with pytest.raises(ConfigError, match="unknown EditConfig"):
        read_model_config(tmp_path)
    (tmp_path / "lusd_config.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_model_config(tmp_path)
