"""Regions: parsing and checks, crop-and-stitch geometry, and edits that change nothing
outside the region in every preset, through the API, the CLI and the batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lusd.cli import app
from lusd.config import EditConfig
from lusd.distill import Conditioning, Distiller
from lusd.edit_path import read_settings
from lusd.errors import ConfigError
from lusd.regions import Region, RegionError, crop_box, region_at, region_weights
from lusd.rules import PRESETS
from lusd.rules.lusd import within_region

SOURCE, TARGET = "a cat", "a cat wearing a party hat"


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_boxes_in_pixels_and_fractions():
    pixels = Region.from_box("8,4,24,20").pixels((64, 48))
    assert pixels.sum() == 16 * 16 and pixels[4, 8] and not pixels[20, 24]
    fractions = Region.from_box("0.5,0,1,0.5").pixels((64, 48))
    assert fractions.sum() == 32 * 24 and fractions[0, 63] and not fractions[24, 63]
    assert Region.looks_like_box(" 0.1, 0.2,0.5,0.6") and not Region.looks_like_box("mask.png")


@pytest.mark.parametrize(
    ("box", "says"),
    [
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("10,10,5,20", "inverted"),
        ("10,10,10,20", "inverted"),
        ("0,0,65,10", "outside the 64x48"),
        ("-1,0,10,10", "outside"),
        ("nan,0,1,1", "four numbers"),
    ],
)
def test_bad_boxes_are_one_clear_error(box, says):
    with pytest.raises(RegionError, match=says):
        Region.from_box(box).pixels((64, 48))


def test_masks_scale_keep_alpha_and_refuse_other_shapes(tmp_path):
    half = Image.new("L", (32, 24), 0)
    half.paste(255, (16, 0, 32, 24))
    grid = Region.from_mask(half).pixels((64, 48))
    assert grid[:, 32:].all() and not grid[:, :32].any()
    strokes = Image.new("RGBA", (64, 48), (255, 255, 255, 0))  # white but transparent
    strokes.paste((255, 0, 200, 255), (0, 0, 10, 10))
    assert Region.from_mask(strokes).pixels((64, 48)).sum() == 100
    with pytest.raises(RegionError, match="aspect ratio"):
        Region.from_mask(Image.new("L", (40, 40), 255)).pixels((64, 48))
    with pytest.raises(RegionError, match="empty"):
        Region.from_mask(Image.new("L", (64, 48), 0)).pixels((64, 48))
    text = tmp_path / "mask.png"
    text.write_text("not a picture")
    with pytest.raises(RegionError, match="not an image"):
        Region.parse(str(text))
    with pytest.raises(RegionError, match="no such mask file"):
        Region.parse("missing.png", tmp_path)
    saved = tmp_path / "half.png"
    half.save(saved)
    assert Region.parse("half.png", tmp_path).label.startswith("mask:half.png@")


def test_crop_box_grows_squares_and_never_upscales():
    # a 10 px object in a 1000 x 600 photo, model working size 512: a 512 px square crop
    assert crop_box((100, 100, 110, 110), (1000, 600), 512, 0.25) == (0, 0, 512, 512)
    # margin 0.5 of a 400 px box: 800 px, clipped to the photo's 600 px height
    assert crop_box((500, 100, 900, 500), (1000, 600), 512, 0.5) == (200, 0, 1000, 600)
    # the region of a picture already at the working size: the whole picture, no crop
    assert crop_box((10, 10, 20, 20), (64, 64), 64, 0.0) is None
    assert crop_box((64, 64, 128, 128), (256, 256), 64, 0.0) == (64, 64, 128, 128)


def test_paste_weights_are_zero_outside_and_one_inside():
    region = np.zeros((40, 40), dtype=bool)
    region[10:30, 10:30] = True
    weights = region_weights(region, 0.05)
    assert (weights[~region] == 0).all() and weights[20, 20] == pytest.approx(1.0, abs=1e-2)
    assert 0 < weights[10, 20] < 1  # a soft edge inside the region
    latent = region_at(region, (5, 5))
    assert latent.shape == (1, 1, 5, 5) and latent[0, 0, 2, 2] == 1 and latent[0, 0, 0, 0] == 0


def test_mask_is_normalised_within_the_region():
    attention = torch.tensor([[0.0, 0.2], [0.4, 1.0]])
    region = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    assert torch.equal(within_region(attention, region), torch.tensor([[0.0, 0.5], [1.0, 0.0]]))


def test_a_whole_picture_region_changes_nothing_in_the_loop():
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(1, 4, 8, 8, generator=gen)

    def unet(latents, timestep, embeddings):
        return eps.expand(latents.shape[0], -1, -1, -1) * embeddings[:, :1, :1, None]

    cond = Conditioning(torch.ones(1, 3, 2), torch.full((1, 3, 2), 2.0))
    results = []
    for region in (None, torch.ones(1, 1, 8, 8)):
        distiller = Distiller(
            unet, torch.linspace(0.99, 0.01, 1000), EditConfig(num_steps=4),
            torch.Generator().manual_seed(1),
        )  # fmt: skip
        results.append(distiller.run(torch.zeros(1, 4, 8, 8), cond, False, region=region))
    assert torch.allclose(results[0].latents, results[1].latents, atol=1e-6)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("crop", [True, False], ids=["crop", "no-crop"])
def test_no_pixel_outside_the_region_changes(tiny_pipe, photo, preset, crop):
    region = Region.from_box("36,4,60,28")
    out = tiny_pipe(
        photo, SOURCE, TARGET, preset=preset, num_steps=3, region=region, crop=crop,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    changed = np.any(np.asarray(out.images[0]) != np.asarray(photo), axis=2)
    allowed = region.pixels(photo.size)
    assert changed.any() and not (changed & ~allowed).any()
    mask = np.asarray(out.masks[0])
    assert mask.shape == allowed.shape and not mask[~allowed].any()
    assert out.stats["region_box"] == [36, 4, 60, 28]
    # tiny model works at 32 px: the crop is a 32 px square around the box, never upscaled
    assert out.stats["crop_box"] == ([32, 0, 64, 32] if crop else None)


def test_cli_box_and_batch_region_column(tiny_model_dir, photo, tmp_path):
    runner = CliRunner()
    photo.save(tmp_path / "photo.png")
    out = tmp_path / "boxed.png"
    args = ["edit", str(tmp_path / "photo.png"), "-s", SOURCE, "-t", TARGET]
    args += ["--model", str(tiny_model_dir), "--steps", "3", "--box", "0.5,0,1,0.5", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        settings = read_settings(image.text)
        edited = np.asarray(image.convert("RGB"))
    assert settings["region"] == "box:0.5,0,1,0.5" and settings["region_box"] == [32, 0, 64, 24]
    changed = np.any(edited != np.asarray(photo), axis=2)
    assert changed[:24, 32:].any() and not changed[24:].any() and not changed[:, :32].any()

    mask = Image.new("L", (32, 24), 0)
    mask.paste(255, (0, 12, 16, 24))  # the bottom left quarter
    mask.save(tmp_path / "where.png")
    (tmp_path / "m.csv").write_text(
        "id,image,source_prompt,target_prompt,region\n"
        f"masked,photo.png,{SOURCE},{TARGET},where.png\nboxed,photo.png,{SOURCE},{TARGET},"
        '"0,0,16,16"\n'
    )
    outdir = tmp_path / "batch"
    args = ["batch", str(tmp_path / "m.csv"), "-o", str(outdir), "--model", str(tiny_model_dir)]
    result = runner.invoke(app, [*args, "--steps", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    masked = np.asarray(Image.open(outdir / "images" / "masked.png").convert("RGB"))
    changed = np.any(masked != np.asarray(photo), axis=2)
    assert changed[24:, :32].any() and not changed[:24].any() and not changed[:, 32:].any()
    report = runner.invoke(app, ["report", str(outdir)])
    assert report.exit_code == 0, report.output
    page = (outdir / "report.html").read_text()
    assert "region mask:where.png@" in page and "region box:0,0,16,16" in page


def test_a_region_needs_the_paste_back(tiny_pipe, photo):
    with pytest.raises(ConfigError, match="paste_back"):
        tiny_pipe(
            photo, SOURCE, TARGET, num_steps=1, paste_back=False, region=Region.from_box("0,0,8,8")
        )
    assert json.dumps(Region.from_box("0,0,8,8").label) == '"box:0,0,8,8"'


def test_a_job_with_a_mask_region_travels_to_a_worker(tmp_path):
    import pickle

    from lusd.batch.jobs import JobSpec

    mask = Image.new("L", (32, 24), 0)
    mask.paste(255, (0, 0, 8, 8))
    job = JobSpec(
        "a", 2, "photo.png", SOURCE, TARGET, None, 0, "lusd", EditConfig(), "hash",
        region=Region.from_mask(mask), crop=False,
    )  # fmt: skip
    back = pickle.loads(pickle.dumps(job))  # Ray sends jobs pickled
    assert back.region.label == job.region.label and not back.crop
    assert (back.region.pixels((64, 48)) == job.region.pixels((64, 48))).all()
