"""Image loading limits, modes, EXIF, fitting, paste-back and atomic saving."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from lusd.errors import ImageInputError
from lusd.images import fit_size, load_image, paste_back, save_image, soft_mask


def test_missing_corrupt_and_not_an_image(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageInputError, match="not an image"):
        load_image(tmp_path / "text.png")
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "red").save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageInputError):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageInputError, match="not a file"):
        load_image(tmp_path)


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(ImageInputError, match="over the limit"):
        load_image(path, max_pixels=50_000)
    assert load_image(path, max_pixels=60_000).size == (300, 200)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageInputError, match="decompression-bomb limit"):
        load_image(path)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "I;16", "CMYK", "1"])
def test_modes_become_rgb(mode):
    image = Image.new(mode, (10, 6))
    result = load_image(image)
    assert result.mode == "RGB" and result.size == (10, 6)


def test_transparency_flattens_on_white_and_16bit_scales():
    clear = load_image(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert clear.getpixel((0, 0)) == (255, 255, 255)
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert load_image(deep).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_honoured(tmp_path):
    image = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_arrays():
    assert load_image(np.zeros((5, 7, 3), dtype=np.float32)).size == (7, 5)
    assert load_image(np.zeros((5, 7), dtype=np.uint16)).size == (7, 5)
    with pytest.raises(ImageInputError, match="shape"):
        load_image(np.zeros((5, 7, 2)))


def test_fit_size_keeps_aspect_and_multiples():
    assert fit_size(1024, 768, 512, 64) == (512, 384)
    assert fit_size(768, 1024, 512, 64) == (384, 512)
    assert fit_size(100, 3000, 64, 16) == (16, 64)
    w, h = fit_size(1000, 563, 512, 64)
    assert w == 512 and h % 64 == 0


def test_paste_back_is_identity_outside_the_mask():
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    edited = Image.new("RGB", (64, 48), "green")
    mask = np.zeros((12, 16), dtype=np.float32)
    mask[4:8, 6:10] = 1.0
    weights = soft_mask(mask, original.size, 0.25, 0.04, 0.02)
    out = np.asarray(paste_back(original, edited, weights))
    outside = weights == 0
    assert outside.mean() > 0.5
    assert np.array_equal(out[outside], np.asarray(original)[outside])
    inside = weights == 1
    assert inside.any() and np.all(out[inside][:, 1] > 100)


def test_save_is_atomic_and_keeps_metadata(tmp_path):
    path = tmp_path / "sub" / "out.png"
    save_image(Image.new("RGB", (8, 8)), path, {"lusd": json.dumps({"seed": 3})})
    assert json.loads(Image.open(path).text["lusd"])["seed"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's 0600
    with pytest.raises(ImageInputError, match="extension"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "out.gif")
    jpg = save_image(Image.new("RGB", (8, 8)), tmp_path / "out.jpg", {"k": "v"})
    assert "k" in Image.open(jpg).getexif()[0x010E]


def test_failed_save_leaves_nothing(tmp_path):
    class Broken(Image.Image):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_image(Broken(), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
