"""`lusd inspect`: the disclosure and Content Credentials of a file, or plainly none."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.cli import app
from lusd.credentials import C2PASigner
from lusd.disclosure import EditDisclosure
from lusd.images import encode_image, save_image
from tests.support.c2pa_certs import make_certificates

runner = CliRunner()


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


DISCLOSURE = EditDisclosure(
    model="shapes",
    weights_hash="0e6c420152a3",
    method="lusd",
    preset="lusd",
    source_prompt="a red circle",
    target_prompt="a red circle and a blue square",
    focus=("blue", "square"),
    seed=4,
    steps=60,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    certs = make_certificates(folder / "certs")
    picture = Image.new("RGB", (20, 12), (30, 60, 200))
    plain = save_image(picture, folder / "plain.png")
    edited = save_image(picture, folder / "edited.webp", xmp=DISCLOSURE.to_xmp())
    signer = C2PASigner.from_files(certs["chain"], certs["key"])
    source = encode_image(picture, "PNG")
    signed = save_image(
        picture,
        folder / "signed.png",
        xmp=DISCLOSURE.to_xmp(),
        finish=lambda data, mime: signer.sign(data, mime, DISCLOSURE, source, "signed.png"),
    )
    return {"plain": plain, "edited": edited, "signed": signed, **certs, "folder": folder}


def test_a_file_without_disclosure_says_so(files):
    result = runner.invoke(app, ["inspect", str(files["plain"])])
    assert result.exit_code == 0, result.output + result.stderr
    assert "AI-edit disclosure: none" in result.output
    assert "C2PA Content Credentials: none" in result.output
    data = json.loads(runner.invoke(app, ["inspect", str(files["plain"]), "--json"]).stdout)
    assert data["discloses_ai_edit"] is False and data["edit"] is None
    assert data["c2pa"]["state"] == "absent"


def test_an_edited_file_reports_its_settings(files):
    result = runner.invoke(app, ["inspect", str(files["edited"])])
    assert result.exit_code == 0, result.output + result.stderr
    text = result.output
    assert "AI-edit disclosure: yes" in text and "compositeWithTrainedAlgorithmicMedia" in text
    assert "model shapes (weights 0e6c420152a3)" in text and "seed 4, 60 steps" in text
    assert "target prompt: a red circle and a blue square" in text
    assert "focus words: blue, square" in text
    data = json.loads(runner.invoke(app, ["inspect", str(files["edited"]), "--json"]).stdout)
    assert data["format"] == "WEBP" and data["edit"]["focus"] == ["blue", "square"]
    assert data["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")


def test_signed_file_validates_and_trust_is_reported(files):
    result = runner.invoke(app, ["inspect", str(files["signed"])])
    assert result.exit_code == 0, result.output + result.stderr
    assert "C2PA Content Credentials: valid signature" in result.output
    assert "not on your trust list" in result.output
    assert "actions: c2pa.opened, c2pa.edited" in result.output
    result = runner.invoke(app, ["inspect", str(files["signed"]), "--c2pa-trust", str(files["ca"])])
    assert "valid and trusted" in result.output
    data = json.loads(runner.invoke(app, ["inspect", str(files["signed"]), "--json"]).stdout)
    assert data["c2pa"]["valid"] is True and data["c2pa"]["settings"]["seed"] == 4


def test_a_tampered_signed_file_fails(files):
    data = bytearray(files["signed"].read_bytes())
    data[data.index(b"IDAT") + 8] ^= 0xFF  # one byte of the picture data
    tampered = files["folder"] / "tampered.png"
    tampered.write_bytes(bytes(data))
    result = runner.invoke(app, ["inspect", str(tampered)])
    assert result.exit_code == 1
    assert "INVALID" in result.output and "assertion.dataHash.mismatch" in result.output
    assert "does not validate" in result.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: d, "not a file"),
        (lambda d: (d / "notes.png").write_text("hi") and d / "notes.png", "not an image"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path, make, message):
    assert message in one_error_line(runner.invoke(app, ["inspect", str(make(tmp_path))]))


def test_broken_xmp_is_one_clear_line(tmp_path):
    path = save_image(Image.new("RGB", (4, 4)), tmp_path / "broken.jpg", xmp="<x:xmpmeta><oops")
    assert "XMP cannot be read" in one_error_line(runner.invoke(app, ["inspect", str(path)]))
