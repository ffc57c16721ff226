"""`lusd generate`, `lusd demo`, `lusd lab bench-shapes` and `lusd lab train-shapes` through
typer's runner (shipped model)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.cli import app
from tests.support.xmp import exiv2_xmp

runner = CliRunner()


def test_generate_writes_a_64px_png_and_reports_the_oracle(tmp_path):
    out = tmp_path / "g.png"
    result = runner.invoke(app, ["generate", "a red circle", "-o", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (64, 64) and "oracle sees" in result.output
    xmp = exiv2_xmp(out)
    assert xmp["Xmp.iptcExt.DigitalSourceType"].endswith("/trainedAlgorithmicMedia")


def test_generate_rejects_a_bad_extension_in_one_line(tmp_path):
    result = runner.invoke(app, ["generate", "a red circle", "-o", str(tmp_path / "g.gif")])
    assert result.exit_code == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "  ", "-o", "g.png"], "prompt is empty"),
        (["generate", "a red circle " * 40, "-o", "g.png"], "tokens long"),
        (["generate", "a red circle", "--steps", "0", "-o", "g.png"], "--steps"),
        (["lab", "bench-shapes", "--cases", "0"], "--cases"),
    ],
)
def test_shapes_commands_refuse_bad_input_in_one_line(tmp_path, args, message):
    args = [str(tmp_path / a) if a.endswith(".png") else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "g.png").exists()


def test_demo_smoke(tmp_path):
    out = tmp_path / "demo.png"
    result = runner.invoke(app, ["demo", "-o", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    # the add twice (the second time told where: its cell in the prompt and as the region)
    assert result.output.count("oracle before") == 4 and result.output.count("oracle after") == 4
    assert "add in the bottom cell:" in result.output
    # the plain add's four candidates, the judge's pick first, each judged by the oracle
    assert "4 candidates, the judge's pick first:" in result.output
    assert result.output.count("oracle: ") == 4
    sheet = Image.open(out)  # a row per edit and one for the candidates, 4 tiles wide
    assert sheet.width == 4 * 256 + 5 * 8 and sheet.height > 5 * 256
    xmp = exiv2_xmp(out)  # a sheet of edits: composite, one line per edit
    assert xmp["Xmp.iptcExt.DigitalSourceType"].endswith("/compositeWithTrainedAlgorithmicMedia")
    assert "a red circle" in str(xmp.get("Xmp.lusd.Description"))


def test_bench_driver_on_the_shipped_model_few_steps(tmp_path):
    from lusd.loading import load_pipeline
    from lusd.shapes.edits import make_cases
    from shapes_lab.edit_bench import run, summarize

    pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    records = run(pipe, make_cases(2, 3), ["lusd", "dds"], overrides={"num_steps": 3})
    summary = summarize(records)
    assert summary["lusd"]["all"]["n"] == 2 and summary["dds"]["all"]["unet_calls"] >= 3
    assert all(r["bg_change"] >= 0 for r in records)


@pytest.mark.slow
def test_bench_command_on_a_few_cases(tmp_path):
    result = runner.invoke(
        app,
        [
            "lab",
            "bench-shapes",
            "--cases",
            "3",
            "--presets",
            "lusd,dds",
            "--out",
            str(tmp_path),
            "--docs",
            str(tmp_path / "results.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "shapes_edits.json").read_text())
    assert payload["n_cases"] == 3 and set(payload["summary"]) == {"lusd", "dds"}
    assert (tmp_path / "shapes_edits.png").exists()
    assert "| lusd |" in (tmp_path / "results.md").read_text()


def test_train_shapes_names_a_work_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["lab", "train-shapes", "--work", str(blocker / "work")])
    assert result.exit_code == 1, result.output
    assert f"cannot use {blocker / 'work'}" in result.output and "unexpected" not in result.output


def test_train_shapes_passes_only_the_options_given_to_the_recipe(tmp_path, monkeypatch):
    import shapes_lab.train as train

    seen: list[list[str]] = []
    monkeypatch.setattr(train, "main", lambda argv: seen.append(argv) or 0)
    args = ["--work", str(tmp_path), "--position-steps", "0:10", "--offset-noise", "0"]
    args += ["--ground-token", "0.3", "--ground-words", "position", "--ground-from", "500"]
    args += ["--ground-until", "900", "--ground-min-t", "600"]
    args += ["--ground-min-side", "8", "--ground-late-words", "none", "--vae-from", "shipped"]
    args += ["--ground-self", "0.05", "--unet-from", "shipped", "--unet-lr", "3e-4"]
    result = runner.invoke(app, ["lab", "train-shapes", *args, "--keep-checkpoints"])
    assert result.exit_code == 0, result.output
    argv = seen[0]
    assert argv[argv.index("--position-steps") + 1] == "0:10"
    assert float(argv[argv.index("--offset-noise") + 1]) == 0.0
    assert float(argv[argv.index("--ground-token") + 1]) == 0.3
    assert argv[argv.index("--ground-words") + 1] == "position"
    assert argv[argv.index("--ground-from") + 1] == "500"
    assert argv[argv.index("--ground-until") + 1] == "900"
    assert argv[argv.index("--ground-min-t") + 1] == "600"
    assert argv[argv.index("--ground-min-side") + 1] == "8"
    assert argv[argv.index("--ground-late-words") + 1] == "none"
    assert float(argv[argv.index("--ground-self") + 1]) == 0.05
    assert argv[argv.index("--vae-from") + 1] == "shipped"
    assert argv[argv.index("--unet-from") + 1] == "shipped"
    assert float(argv[argv.index("--unet-lr") + 1]) == 3e-4
    assert "--keep-checkpoints" in argv
    assert "--ground-pixel" not in argv
    assert "--seed" not in argv and "--unet-minutes" not in argv
