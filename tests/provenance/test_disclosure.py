"""The AI-edit disclosure in every output: written by Pillow, read back by exiv2 (pyexiv2).

And C2PA Content Credentials signed with a throwaway certificate chain, read by c2pa-python.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyexiv2
import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.batch import BatchOptions, run_batch
from lusd.batch.journal import Journal
from lusd.batch.report import write_report
from lusd.cli import app
from lusd.credentials import read_credentials
from lusd.disclosure import DIGITAL_SOURCE_TYPE, EditDisclosure, read_disclosure
from lusd.images import save_image
from lusd.model_id import model_weights_hash
from tests.support.batch_fakes import FakeFactory, write_manifest
from tests.support.c2pa_certs import make_certificates
from tests.support.xmp import exiv2_xmp

runner = CliRunner()
DST = "Xmp.iptcExt.DigitalSourceType"
TRICKY = 'a cat in a "party" hat & <bow>, naïve café \x07'


def sample(**changes) -> EditDisclosure:
    values = dict(
        model="tiny/model",
        weights_hash="0123456789ab",
        method="lusd",
        preset="lusd",
        source_prompt="a cat",
        target_prompt=TRICKY,
        focus=("party", "hat"),
        seed=7,
        steps=3,
    )
    return EditDisclosure(**{**values, **changes})


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_every_format_carries_the_disclosure(tmp_path, suffix):
    path = save_image(
        Image.new("RGB", (24, 16), (10, 200, 30)),
        tmp_path / f"out{suffix}",
        {"lusd": "{}"},
        xmp=sample().to_xmp(),
    )
    xmp = exiv2_xmp(path)
    assert xmp[DST] == DIGITAL_SOURCE_TYPE
    assert xmp["Xmp.lusd.Model"] == "tiny/model"
    assert xmp["Xmp.lusd.WeightsHash"] == "0123456789ab"
    assert xmp["Xmp.lusd.Method"] == "lusd" and xmp["Xmp.lusd.Preset"] == "lusd"
    assert xmp["Xmp.lusd.SourcePrompt"] == "a cat"
    assert xmp["Xmp.lusd.TargetPrompt"] == TRICKY.replace("\x07", "")
    assert xmp["Xmp.lusd.FocusWords"] == ["party", "hat"]
    assert xmp["Xmp.lusd.Seed"] == "7" and xmp["Xmp.lusd.Steps"] == "3"
    assert xmp["Xmp.lusd.Version"] == sample().version
    found = read_disclosure(path)
    assert found.discloses_ai and found.edit.focus == ("party", "hat") and found.edit.seed == 7
    assert found.edit.target_prompt == xmp["Xmp.lusd.TargetPrompt"]


def test_a_file_written_by_exiv2_is_read_back(tmp_path):
    path = tmp_path / "foreign.png"
    Image.new("RGB", (8, 8)).save(path)
    with pyexiv2.ImageData(path.read_bytes()) as image:
        image.modify_xmp({DST: DIGITAL_SOURCE_TYPE})
        path.write_bytes(image.get_bytes())
    found = read_disclosure(path)
    assert found.discloses_ai and found.edit is None
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    assert not read_disclosure(plain).discloses_ai and read_disclosure(plain).xmp == {}


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_cli_edit_discloses_in_each_format(tmp_path, tiny_model_dir, suffix):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 32), (200, 40, 40)).save(photo)
    out, mask = tmp_path / f"out{suffix}", tmp_path / "mask.png"
    result = runner.invoke(
        app,
        [
            "edit",
            str(photo),
            "-s",
            "a cat",
            "-t",
            "a cat wearing a party hat",
            "--model",
            str(tiny_model_dir),
            "--steps",
            "2",
            "--seed",
            "5",
            "-o",
            str(out),
            "--save-mask",
            str(mask),
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    xmp = exiv2_xmp(out)
    assert xmp[DST] == DIGITAL_SOURCE_TYPE
    assert xmp["Xmp.lusd.Model"] == str(tiny_model_dir)
    assert xmp["Xmp.lusd.WeightsHash"] == model_weights_hash(str(tiny_model_dir))
    assert xmp["Xmp.lusd.Seed"] == "5" and xmp["Xmp.lusd.Steps"] == "2"
    assert xmp["Xmp.lusd.FocusWords"] == ["party", "hat"]
    assert xmp["Xmp.lusd.TargetPrompt"] == "a cat wearing a party hat"
    assert DST not in exiv2_xmp(mask)  # the mask is not an edited picture
    assert read_credentials(out).state == "absent"


def test_cli_edit_signs_c2pa_and_keeps_the_xmp(tmp_path, tiny_model_dir, certs):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(photo)
    out = tmp_path / "signed.jpg"
    args = ["edit", str(photo), "-t", "a hat", "--model", str(tiny_model_dir), "--steps", "1"]
    sign = ["--c2pa-cert", str(certs["chain"]), "--c2pa-key", str(certs["key"])]
    result = runner.invoke(app, [*args, "-o", str(out), *sign])
    assert result.exit_code == 0, result.output + result.stderr
    assert exiv2_xmp(out)[DST] == DIGITAL_SOURCE_TYPE
    report = read_credentials(out)
    assert report.state == "Valid" and report.failures == ["signingCredential.untrusted"]
    assert report.actions == ["c2pa.opened", "c2pa.edited"]
    assert report.digital_source_types == [DIGITAL_SOURCE_TYPE]
    assert report.ingredients == ["source image"] and report.signer == "lusd test signer"
    assert report.settings["target_prompt"] == "a hat" and report.settings["steps"] == 1
    assert read_credentials(out, certs["ca"]).state == "Trusted"
    tampered = tmp_path / "tampered.jpg"
    data = bytearray(out.read_bytes())
    data[-40] ^= 0xFF  # a byte of the picture, inside the hashed range
    tampered.write_bytes(bytes(data))
    assert read_credentials(tampered).state == "Invalid"


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (lambda c: ["--c2pa-cert", str(c["chain"])], "go together"),
        (lambda c: ["--c2pa-cert", str(c["key"]), "--c2pa-key", str(c["key"])], "not a PEM cert"),
        (lambda c: ["--c2pa-cert", str(c["chain"]), "--c2pa-key", str(c["ca"])], "not a PEM priv"),
        (lambda c: ["--c2pa-cert", "/nonexistent.pem", "--c2pa-key", str(c["key"])], "cannot read"),
        (
            lambda c: ["--c2pa-cert", str(c["self_signed"]), "--c2pa-key", str(c["key"])],
            "self-signed",
        ),
        (lambda c: ["--c2pa-cert", str(c["ca"]), "--c2pa-key", str(c["key"])], "self-signed"),
    ],
)
def test_unusable_certificates_are_one_line_and_write_nothing(
    tmp_path, tiny_model_dir, certs, which, message
):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(photo)
    out = tmp_path / "out.png"
    args = ["edit", str(photo), "-t", "a hat", "--model", str(tiny_model_dir), "-o", str(out)]
    result = runner.invoke(app, [*args, *which(certs)])
    assert result.exit_code == 1, result.output + result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()


def test_a_key_of_another_certificate_is_refused(tmp_path, certs):
    from lusd.credentials import C2PASigner
    from lusd.errors import SigningError

    other = make_certificates(tmp_path / "other")
    with pytest.raises(SigningError, match="does not belong"):
        C2PASigner.from_files(certs["chain"], other["key"])


def test_batch_outputs_disclose_and_the_report_says_so(tmp_path, certs):
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    opts = BatchOptions(
        manifest,
        out,
        model="fake",
        oracle=False,
        c2pa_cert=str(certs["chain"]),
        c2pa_key=str(certs["key"]),
        hour_price=3.6,
    )
    summary = run_batch(opts, FakeFactory())
    assert summary.done == 2 and summary.failed == 0
    with Journal(out / "journal.sqlite") as journal:
        jobs = journal.jobs()
        assert json.loads(journal.get_meta("license"))["commercial_use"] == "unknown"
        assert journal.get_meta("disclosure") == "xmp+c2pa"
    for job in jobs:
        xmp = exiv2_xmp(out / job["output"])
        assert xmp[DST] == DIGITAL_SOURCE_TYPE and xmp["Xmp.lusd.Model"] == "fake"
        assert xmp["Xmp.lusd.Seed"] == str(job["seed"])
        assert read_credentials(out / job["output"]).valid
    page = write_report(out).read_text()
    assert "licence unknown" in page and "commercial use: unknown" in page
    assert "outputs disclosing the AI edit (XMP)" in page and "2 of 2" in page
    assert "C2PA credentials valid" in page and "C2PA valid" in page
    assert "estimated cost per image" in page and "at 3.6/h" in page


def test_unsigned_batch_report_without_price(tmp_path):
    manifest = write_manifest(tmp_path, 1)
    out = tmp_path / "out"
    run_batch(BatchOptions(manifest, out, model="fake", oracle=False), FakeFactory())
    page = write_report(out).read_text()
    assert "1 of 1" in page and "C2PA credentials valid" not in page
    assert "pass --hour-price" in page
    assert "at 7.2/h" in write_report(out, hour_price=7.2).read_text()


def test_web_app_results_disclose(tmp_path):
    from lusd.model_id import ModelIdentity
    from lusd.web.editing import AppSettings, Editor
    from tests.support.web import FakePipeline, shapes_picture

    pipe = FakePipeline()
    pipe.identity = ModelIdentity("shapes", "abcdef012345")
    editor = Editor(pipe, AppSettings(max_pixels=100 * 100), tmp_path / "work")
    record = editor.run(
        str(shapes_picture(tmp_path / "in.png")), "a red circle", "a blue circle", "", 3, 11
    )
    xmp = exiv2_xmp(Path(record.result_path))
    assert xmp[DST] == DIGITAL_SOURCE_TYPE
    assert xmp["Xmp.lusd.Model"] == "shapes" and xmp["Xmp.lusd.WeightsHash"] == "abcdef012345"
    assert xmp["Xmp.lusd.Seed"] == "11" and xmp["Xmp.lusd.TargetPrompt"] == "a blue circle"
    assert exiv2_xmp(Path(record.overlay_path))[DST] == DIGITAL_SOURCE_TYPE
