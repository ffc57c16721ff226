"""Model licences: the table, reading model cards and LICENSE files, --require-commercial."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.batch import BatchOptions, run_batch
from lusd.cli import app
from lusd.errors import LicenseError
from lusd.licensing import (
    KNOWN_LICENSES,
    license_for,
    lookup,
    read_model_license,
    require_commercial,
)
from lusd.shapes import SHAPES_MODEL_DIR
from tests.support.batch_fakes import FakeFactory, write_manifest

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def one_error_line(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def card(folder: Path, front: str, body: str = "# model\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front}\n---\n{body}")
    return folder


@pytest.mark.parametrize(
    ("license_id", "expected"),
    [
        ("creativeml-openrail-m", "restricted"),
        ("openrail++", "restricted"),
        ("openrail", "restricted"),
        ("stabilityai-ai-community", "restricted"),
        ("cc-by-4.0", "allowed"),
        ("cc-by-nc-4.0", "not allowed"),
        ("cc-by-nc-sa-4.0", "not allowed"),
        ("cc-by-nc-nd-3.0", "not allowed"),  # not in the table: the cc-by-nc-* rule
        ("cc-by-nc-2.0", "not allowed"),
        ("MIT", "allowed"),
        ("apache-2.0", "allowed"),
        ("other", "unknown"),
        ("unknown", "unknown"),
    ],
)
def test_table_maps_licences_to_commercial_use(license_id, expected):
    found = lookup(license_id)
    assert found.commercial_use == expected
    assert found.note and "\n" not in found.note
    assert found.permits_commercial == (expected in ("allowed", "restricted"))


def test_every_table_row_has_a_valid_category_and_a_one_line_note():
    for license_id, terms in KNOWN_LICENSES.items():
        assert terms.commercial_use in ("allowed", "restricted", "not allowed", "unknown")
        assert terms.note and "\n" not in terms.note, license_id


def test_unknown_licence_id_is_unknown_and_says_so():
    found = lookup("my-own-licence-v3")
    assert not found.known and found.commercial_use == "unknown"
    assert "not in lusd's table" in found.note


def test_card_front_matter_is_read(tmp_path):
    found = read_model_license(card(tmp_path / "m", "license: cc-by-nc-4.0\ntags: [a]"))
    assert (found.id, found.commercial_use) == ("cc-by-nc-4.0", "not allowed")
    assert found.source == "README.md front-matter"


def test_other_with_license_name_uses_the_name(tmp_path):
    front = "license: other\nlicense_name: stabilityai-ai-community\nlicense_link: LICENSE.md"
    found = read_model_license(card(tmp_path / "m", front))
    assert (found.id, found.commercial_use) == ("stabilityai-ai-community", "restricted")


def test_card_beside_a_single_checkpoint(tmp_path):
    card(tmp_path, "license: creativeml-openrail-m")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    assert read_model_license(weights).id == "creativeml-openrail-m"
    (tmp_path / "model.md").write_text("---\nlicense: mit\n---\n")  # <stem>.md wins
    assert read_model_license(weights).id == "mit"


def test_license_file_first_recognisable_line(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("# no front-matter here\n")
    (folder / "LICENSE").write_text(
        "Copyright (c) 2024 someone\n\nAttribution-NonCommercial 4.0 International\n\n"
        "MIT License is mentioned later and must not win\n"
    )
    found = read_model_license(folder)
    assert (found.id, found.source) == ("cc-by-nc-4.0", "LICENSE file")
    (folder / "LICENSE").write_text("All rights reserved.\n")
    found = read_model_license(folder)
    assert found.id == "unknown" and "no line lusd recognises" in found.source


def test_no_card_no_license_and_uncached_hub_ids_are_unknown(tmp_path):
    (tmp_path / "m").mkdir()
    assert read_model_license(tmp_path / "m").id == "unknown"
    assert read_model_license("no-such-owner/no-such-model-xyz").commercial_use == "unknown"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nlicense: mit\n", "never closed"),
        ("---\nlicense: [mit\n---\n", "not valid YAML"),
        ("---\n- a\n- b\n---\n", "not a YAML mapping"),
        ("---\nlicense: {a: 1}\n---\n", "must be one licence id"),
        ("---\nlicense: [mit, apache-2.0]\n---\n", "must be one licence id"),
    ],
)
def test_malformed_cards_are_one_clear_line(tmp_path, text, message):
    (tmp_path / "README.md").write_text(text)
    with pytest.raises(LicenseError, match=message) as caught:
        read_model_license(tmp_path)
    assert "\n" not in str(caught.value) and "README.md" in str(caught.value)
    assert license_for(tmp_path, strict=False).commercial_use == "unknown"
    with pytest.raises(LicenseError):
        license_for(tmp_path, strict=True)


def test_require_commercial_names_the_licence():
    require_commercial(lookup("openrail++"), "sdxl")  # restricted is allowed
    with pytest.raises(LicenseError) as caught:
        require_commercial(lookup("cc-by-nc-4.0", "README.md front-matter"), "m")
    text = str(caught.value)
    assert "'cc-by-nc-4.0'" in text and "not allowed" in text and "\n" not in text


def test_shipped_shapes_model_carries_the_project_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    found = read_model_license(None)
    assert found.id == project.lower() and found.source == "README.md front-matter"
    assert found.commercial_use == "allowed"
    assert (SHAPES_MODEL_DIR / "README.md").is_file()


@pytest.fixture(scope="module")
def nc_model(tiny_model_dir, tmp_path_factory):
    """The tiny model with a non-commercial model card."""
    folder = tmp_path_factory.mktemp("nc") / "model"
    shutil.copytree(tiny_model_dir, folder)
    card(folder, "license: cc-by-nc-4.0")
    return folder


def test_info_json_has_licence_hash_parameters_estimate_and_cost(nc_model):
    result = runner.invoke(
        app, ["info", str(nc_model), "--json", "--hour-price", "3.6", "--probe-steps", "1"]
    )
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["license"] == "cc-by-nc-4.0" and report["commercial_use"] == "not allowed"
    assert len(report["weights_hash"]) == 12
    assert report["parameters"] == sum(c["parameters"] for c in report["components"].values())
    estimate = report["estimate"]
    assert estimate["is_estimate"] and estimate["num_steps"] == 300
    assert estimate["seconds_per_edit"] > 0
    # 3.6 per hour is 0.001 per second
    assert report["cost"]["per_edit"] == pytest.approx(estimate["seconds_per_edit"] * 0.001)
    assert report["cost"]["per_1000"] == pytest.approx(1000 * report["cost"]["per_edit"])


def test_info_text_names_licence_and_estimate(nc_model):
    result = runner.invoke(app, ["info", str(nc_model), "--probe-steps", "1", "--steps", "10"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "licence: cc-by-nc-4.0" in result.output
    assert "commercial use: not allowed" in result.output
    assert "estimated time per edit" in result.output and "for 10 steps" in result.output


def test_info_malformed_card_and_unknown_licence(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "README.md").write_text("---\nlicense: [mit\n---\n")
    assert "malformed model card" in one_error_line(runner.invoke(app, ["info", str(folder)]))
    card(folder, "license: my-own-licence")
    result = runner.invoke(app, ["info", str(folder), "--no-estimate", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["commercial_use"] == "unknown"
    assert "not in lusd's table" in result.stderr


def test_edit_require_commercial_refuses_without_writing(nc_model, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(photo)
    out = tmp_path / "out.png"
    args = ["edit", str(photo), "-t", "a hat", "--model", str(nc_model), "-o", str(out)]
    line = one_error_line(runner.invoke(app, [*args, "--require-commercial"]))
    assert "cc-by-nc-4.0" in line and "commercial use not allowed" in line
    assert not out.exists()
    allowed = tmp_path / "ok"
    shutil.copytree(nc_model, allowed)
    card(allowed, "license: creativeml-openrail-m")
    args[5] = str(allowed)
    result = runner.invoke(app, [*args, "--steps", "1", "--require-commercial"])
    assert result.exit_code == 0, result.output + result.stderr
    assert out.is_file()


def test_batch_require_commercial_option_and_manifest_header(tmp_path, tiny_model_dir):
    # a real SD folder: the batch checks the model's layout before any row runs
    model = shutil.copytree(tiny_model_dir, tmp_path / "nc-model")
    card(model, "license: cc-by-nc-4.0")
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    opts = BatchOptions(manifest, out, model=str(model), oracle=False, require_commercial=True)
    with pytest.raises(LicenseError, match="cc-by-nc-4.0"):
        run_batch(opts, FakeFactory())
    assert not out.exists()
    # the manifest's header asks for it: the CLI refuses in one line, writes nothing
    rows = manifest.read_text()
    manifest.write_text("# made by a test\n# lusd: require_commercial=true\n" + rows)
    args = ["batch", str(manifest), "-o", str(out), "--model", str(model), "--no-progress"]
    assert "cc-by-nc-4.0" in one_error_line(runner.invoke(app, args))
    assert not out.exists()
    # without the header and the flag the batch runs, and records the licence
    manifest.write_text(rows)
    summary = run_batch(BatchOptions(manifest, out, model=str(model), oracle=False), FakeFactory())
    assert summary.done == 2


def test_app_settings_require_commercial():
    from lusd.web.editing import AppSettings, Editor
    from tests.support.web import FakePipeline

    settings = AppSettings(model_license=lookup("cc-by-nc-4.0"), require_commercial=True)
    with pytest.raises(LicenseError, match="cc-by-nc-4.0"):
        Editor(FakePipeline(), settings, Path("/nonexistent"))
    with pytest.raises(LicenseError, match="unknown"):  # a licence nobody read is refused
        Editor(FakePipeline(), AppSettings(require_commercial=True), Path("/nonexistent"))
    Editor(FakePipeline(), AppSettings(model_license=lookup("mit"), require_commercial=True), "w")


def test_a_shapes_export_carries_the_model_card(tmp_path):
    from shapes_lab.models import Arch, build_vae
    from shapes_lab.train import main
    from tests.support.shapes_arch import tiny_unet_arch

    source = tmp_path / "trained"
    build_vae(Arch(vae_channels=(8, 8, 8), vae_groups=4)).save_pretrained(source / "vae")
    out = tmp_path / "model"
    unet_only = json.dumps(tiny_unet_arch())
    args = ["--work", str(tmp_path / "work"), "--arch", unet_only, "--no-progress"]
    args += ["--threads", "1", "--unet-batch", "4", "--unet-steps", "2", "--out", str(out)]
    assert main([*args, "--vae-from", str(source)]) == 0
    assert read_model_license(out).id == "mit"
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n")  # an edited card stays
    assert main([*args, "--stages", "export"]) == 0
    assert read_model_license(out).id == "apache-2.0"
