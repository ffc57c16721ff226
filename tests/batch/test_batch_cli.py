"""`lusd batch`, `lusd eval`, `lusd report` through typer's runner on the tiny SD model."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.batch.journal import Journal
from lusd.cli import app
from tests.support.batch_fakes import write_manifest

runner = CliRunner()


def _one_error_line(result) -> str:
    assert "Traceback" not in result.output + result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    """A 4-row manifest (one bad row) run once with the tiny model, 2 steps per edit."""
    tmp = tmp_path_factory.mktemp("cli")
    manifest = write_manifest(tmp, 3, extra={"num_steps": 2}, fmt="csv")
    with manifest.open("a") as fh:
        fh.write("images/missing.png,a red square,a blue circle,9,2\n")
    out = tmp / "out"
    args = ["batch", str(manifest), "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"]
    result = runner.invoke(app, args)
    return manifest, out, args, result


def test_batch_runs_good_rows_and_names_the_bad_one(finished):
    manifest, out, _, result = finished
    assert result.exit_code == 1, result.output + result.stderr
    assert "line 5: image 'images/missing.png' not found" in result.stderr
    assert "3 done, 0 failed" in result.output
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert [r["state"] for r in rows] == ["done"] * 3
        assert all(r["unet_calls"] == 2 and r["config_hash"] for r in rows)
        assert json.loads(j.get_meta("bad_rows"))[0]["line"] == 5
    for r in rows:
        with Image.open(out / r["output"]) as im:
            assert im.size == (32, 32)
        with Image.open(out / r["mask"]) as m:
            assert m.mode == "L" and m.size == (32, 32)


def test_rerun_is_a_no_op_and_changed_config_needs_the_flag(finished):
    manifest, out, args, _ = finished
    result = runner.invoke(app, args)
    assert "0 done, 0 failed, 3 already done" in result.output
    # --steps loses against the rows' own num_steps column: nothing changes
    result = runner.invoke(app, [*args, "--steps", "3"])
    assert "3 already done" in result.output and "changed" not in result.stderr
    result = runner.invoke(app, [*args, "--set", "t_min=100"])
    assert "3 done row(s) changed" in result.stderr and "0 done" in result.output
    result = runner.invoke(app, [*args, "--set", "t_min=100", "--rerun-changed"])
    assert "3 done, 0 failed" in result.output
    with Journal(out / "journal.sqlite") as j:
        assert {json.loads(r["config"])["t_min"] for r in j.jobs()} == {100}
        assert {r["unet_calls"] for r in j.jobs()} == {2}


def test_eval_and_report_commands(finished):
    _, out, _, _ = finished
    result = runner.invoke(app, ["eval", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    assert "no CLIP model given" in result.stderr and "l1_outside" in result.output
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["edits"] == 3 and summary["clip_auc"] is None
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    page = (out / "report.html").read_text()
    assert "images/missing.png" in page and page.count("<tr>") >= 5


def test_strict_and_foreign_outdir_are_one_line_errors(finished, tmp_path, tiny_model_dir):
    manifest, out, _, _ = finished
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(tmp_path / "o"), "--strict"])
    assert result.exit_code == 1
    assert "1 bad row(s)" in _one_error_line(result)
    assert not (tmp_path / "o" / "journal.sqlite").exists()
    other = write_manifest(tmp_path / "other", 1)
    args = ["batch", str(other), "-o", str(out), "--model", str(tiny_model_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "belongs to the batch of manifest" in _one_error_line(result)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert "has no batch journal" in _one_error_line(result)


def test_shapes_model_batch_is_judged_by_the_oracle(tmp_path):
    from lusd.shapes import SHAPES_MODEL_DIR

    if not (SHAPES_MODEL_DIR / "model_index.json").is_file():
        pytest.skip("the shapes model is not shipped in this checkout")
    from lusd.shapes.edits import make_cases

    lines = ["id,image,source_prompt,target_prompt"]
    for case in make_cases(2, seed=3):
        case.image().save(tmp_path / f"{case.case_id}.png")
        lines.append(f"{case.case_id},{case.case_id}.png,{case.source_prompt},{case.target_prompt}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(tmp_path / "m.csv"), "-o", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output + result.stderr
    with Journal(out / "journal.sqlite") as j:
        metrics = j.metrics()
        assert j.get_meta("model").startswith("shapes@")
    assert len(metrics) == 2
    for m in metrics.values():
        assert m["oracle_success"] in (0.0, 1.0) and m["oracle_bg_change"] >= 0
