"""`lusd edit` / `lusd info` through typer's runner: success and every bad input."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.cli import app

runner = CliRunner()


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
        path
    )
    return path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, pattern, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert pattern in lines[0], lines[0]


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("lusd ")


def test_edit_writes_image_mask_and_metadata(photo, tmp_path, tiny_model_dir):
    out, mask = tmp_path / "out.png", tmp_path / "mask.png"
    result = run(
        "edit",
        photo,
        "--source",
        "a cat",
        "--target",
        "a cat wearing a party hat",
        "--model",
        tiny_model_dir,
        "--steps",
        3,
        "--seed",
        7,
        "-o",
        out,
        "--save-mask",
        mask,
        "--set",
        "lambda_reg=0.05",
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert "focus: party, hat" in result.output
    edited = Image.open(out)
    assert edited.size == (56, 40) and Image.open(mask).mode == "L"
    settings = json.loads(edited.text["lusd"])
    assert settings["seed"] == 7 and settings["target_prompt"] == "a cat wearing a party hat"
    assert settings["config"]["num_steps"] == 3 and settings["config"]["lambda_reg"] == 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "out.png", "photo.png"]


def test_info(tiny_model_dir):
    result = run("info", tiny_model_dir)
    assert result.exit_code == 0
    assert "cross-attention at latent/4" in result.output and "native size: 32 px" in result.output


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: d / "missing.png", [], "image not found"),
        (lambda d: (d / "notes.png").write_text("hi") and d / "notes.png", [], "not an image"),
        (lambda d: d, [], "not a file"),
    ],
)
def test_bad_images(tmp_path, tiny_model_dir, make_input, extra, message):
    out = tmp_path / "out.png"
    result = run(
        "edit", make_input(tmp_path), "-t", "a hat", "--model", tiny_model_dir, "-o", out, *extra
    )
    assert_one_line_error(result, message)
    assert not out.exists()


def test_pixel_limit(photo, tiny_model_dir, tmp_path):
    result = run(
        "edit",
        photo,
        "-t",
        "a hat",
        "--model",
        tiny_model_dir,
        "--max-pixels",
        1000,
        "-o",
        tmp_path / "o.png",
    )
    assert_one_line_error(result, "over the limit")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "  "], "target prompt is empty"),
        (["-t", "a cat " * 60], "tokens long"),
        (["-t", "a hat", "--preset", "nope"], "unknown preset"),
        (["-t", "a hat", "--set", "bogus=1"], "unknown EditConfig"),
        (["-t", "a hat", "--set", "lambda_reg=lots"], "lambda_reg expects float"),
        (["-t", "a hat", "--device", "cuda:7"], "cuda"),
        (["-t", "a hat", "--dtype", "float16", "--device", "cpu"], "float16 is not supported"),
        (["-t", "a hat", "--focus", "dog"], "does not occur"),
        (["-t", "a hat", "-o", "x.gif"], "unsupported output extension"),
    ],
)
def test_bad_arguments(photo, tiny_model_dir, tmp_path, args, message):
    if "-o" not in args:
        args = [*args, "-o", tmp_path / "o.png"]
    result = run("edit", photo, "--model", tiny_model_dir, "--steps", 1, *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "o.png").exists()


def test_bad_models(photo, tmp_path):
    (tmp_path / "folder").mkdir()
    assert_one_line_error(
        run("edit", photo, "-t", "a hat", "--model", tmp_path / "folder"),
        "not a diffusers Stable Diffusion folder",
    )
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    assert_one_line_error(
        run("edit", photo, "-t", "a hat", "--model", tmp_path / "weights.ckpt"), "--allow-pickle"
    )
    assert_one_line_error(run("info", tmp_path / "nothing"), "model not found")


def test_refuses_to_overwrite_input(photo, tiny_model_dir):
    before = photo.read_bytes()
    assert_one_line_error(
        run("edit", photo, "-t", "a hat", "--model", tiny_model_dir, "-o", photo),
        "refusing to overwrite",
    )
    assert photo.read_bytes() == before
