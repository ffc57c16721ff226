"""Candidates per row and review flags: options, manifest values, journal, metrics, report."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lusd.batch import BatchOptions, run_batch
from lusd.batch.jobs import build_jobs, config_hash
from lusd.batch.journal import Journal
from lusd.batch.manifest import read_manifest
from lusd.batch.report import write_report
from lusd.cli import app
from lusd.config import EditConfig
from lusd.edit_path import read_settings
from lusd.errors import ConfigError
from tests.support.batch_fakes import FakeEditor, fake_score, write_manifest

runner = CliRunner()


def _opts(manifest, outdir, **kw):
    return BatchOptions(manifest, outdir, model="fake", oracle=False, **kw)


def _one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output + result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def _score(seed: int) -> float:
    """The fake judge's score of the candidate made with ``seed``."""
    colour = torch.randint(0, 256, (3,), generator=torch.Generator("cpu").manual_seed(seed))
    return fake_score(tuple(int(c) for c in colour))


def _fail_row(manifest, index: int) -> None:
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    rows[index]["target_prompt"] = "FAIL here"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


# -- option and manifest values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidates", "0"], "candidates must be a whole number from 1 to 16, got 0"),
        (["--candidates", "17"], "candidates must be a whole number from 1 to 16, got 17"),
        (["--candidates", "two"], "Invalid value for '--candidates'"),
        (["--review-threshold", "1.5"], "--review-threshold (a judge score) must be a finite"),
        (["--review-threshold", "-0.1"], "between 0 and 1, got -0.1"),
        (["--review-threshold", "nan"], "--review-threshold (a judge score) must be a finite"),
        (["--review-threshold", "high"], "Invalid value for '--review-threshold'"),
        (["--group", "0"], "--group must be between 1 and 64, got 0"),
        (["--group", "65"], "--group must be between 1 and 64, got 65"),
    ],
)
def test_bad_option_values_are_one_line_and_write_nothing(tmp_path, args, message):
    manifest = write_manifest(tmp_path, 1, fmt="csv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(out), *args])
    assert message in _one_error_line(result)
    assert not out.exists()


def test_candidates_column_bad_values_are_bad_rows(tmp_path):
    manifest = write_manifest(tmp_path, 5, fmt="csv")
    lines = manifest.read_text().splitlines()
    lines[0] += ",candidates"
    for i, value in enumerate(["0", "17", "two", "3", ""], 1):
        lines[i] += f",{value}"
    manifest.write_text("\n".join(lines) + "\n")
    parsed = read_manifest(manifest, default_candidates=2)
    assert [(r.line, r.candidates) for r in parsed.rows] == [(5, 3), (6, 2)]
    bad = {e.line: e.message for e in parsed.errors}
    assert bad == {
        2: "candidates must be a whole number from 1 to 16, got 0",
        3: "candidates must be a whole number from 1 to 16, got 17",
        4: "candidates must be a whole number from 1 to 16, got 'two'",
    }
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(out), "--strict"])
    assert "3 bad row(s)" in _one_error_line(result)
    assert not out.exists()


def test_candidates_header_sets_the_manifest_default(tmp_path):
    manifest = write_manifest(tmp_path, 2)
    rows = manifest.read_text().splitlines(keepends=True)
    row = json.loads(rows[1])
    row["candidates"] = 1
    manifest.write_text("# lusd: candidates=4\n" + rows[0] + json.dumps(row) + "\n")
    parsed = read_manifest(manifest, default_candidates=2)
    assert parsed.directives["candidates"] == 4
    assert [r.candidates for r in parsed.rows] == [4, 1]  # the row's own value wins
    for value in ("0", "two", ""):
        manifest.write_text(f"# lusd: candidates={value}\n" + rows[0])
        with pytest.raises(ConfigError, match="line 1: candidates must be a whole number"):
            read_manifest(manifest)
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(out)])
    assert "line 1: candidates must be" in _one_error_line(result)
    assert not out.exists()


def test_config_hash_names_candidates_only_when_several(tmp_path):
    rows = read_manifest(write_manifest(tmp_path, 1)).rows
    config = EditConfig()
    legacy = {
        "config": config.row_hash_dict(),
        "image": str(rows[0].image),
        "source": rows[0].source_prompt,
        "target": rows[0].target_prompt,
        "focus": None,
        "seed": rows[0].seed,
        "model": "m",
    }
    blob = json.dumps(legacy, sort_keys=True).encode()
    assert config_hash(rows[0], config, "m") == hashlib.sha256(blob).hexdigest()[:16]
    (jobs, _), (jobs2, _) = (
        build_jobs(rows, config, "m", judge=True),
        build_jobs(read_manifest(tmp_path / "manifest.jsonl", default_candidates=2).rows,
                   config, "m"),
    )  # fmt: skip
    assert jobs[0].config_hash == config_hash(rows[0], config, "m")  # judging: same output
    assert jobs2[0].config_hash != jobs[0].config_hash and jobs2[0].candidates == 2


# -- candidates ------------------------------------------------------------------------------


def test_several_candidates_keep_the_best_and_journal_its_score(tmp_path):
    manifest = write_manifest(tmp_path, 3)
    out = tmp_path / "out"
    s = run_batch(_opts(manifest, out, candidates=3), FakeEditor)
    assert (s.done, s.review) == (3, "")  # scores, but no flags without a threshold
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert j.review_threshold() is None
    for row in rows:
        scores = {seed: _score(seed) for seed in range(row["seed"], row["seed"] + 3)}
        best = max(scores, key=lambda seed: (scores[seed], -seed))
        assert row["candidates"] == 3 and row["needs_review"] is None
        assert row["judge_score"] == pytest.approx(scores[best])
        with Image.open(out / row["output"]) as im:
            settings = read_settings(im.text)
        assert (settings["seed"], settings["candidates"]) == (best, 3)
        assert settings["judge_score"] == pytest.approx(scores[best])
    page = write_report(out).read_text()
    assert "judge score" in page and "best of 3 candidates" in page
    assert "id='review-kpi'" not in page and "id='only-review'" not in page
    assert "class='badge'" not in page


def test_one_candidate_without_threshold_is_not_judged(tmp_path):
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    run_batch(_opts(manifest, out), FakeEditor)
    with Journal(out / "journal.sqlite") as j:
        assert {(r["candidates"], r["judge_score"], r["needs_review"]) for r in j.jobs()} == {
            (1, None, None)
        }
    with (out / "metrics.csv").open() as fh:
        assert {(r["judge_score"], r["needs_review"]) for r in csv.DictReader(fh)} == {("", "")}
    assert json.loads((out / "metrics.json").read_text())["review"] is None
    assert "judge score" not in write_report(out).read_text()


# -- review flags ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    """8 rows (one fails) judged with a threshold between the fake's scores."""
    tmp = tmp_path_factory.mktemp("review")
    manifest = write_manifest(tmp, 8)
    _fail_row(manifest, 6)
    scores = sorted(_score(seed) for seed in range(8) if seed != 6)
    threshold = round((scores[2] + scores[3]) / 2, 4)  # three rows under it
    out = tmp / "out"
    summary = run_batch(_opts(manifest, out, review_threshold=threshold), FakeEditor)
    return out, threshold, summary


def test_every_row_is_judged_and_flagged_in_the_journal(flagged):
    out, threshold, summary = flagged
    assert (summary.done, summary.failed) == (7, 1)
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert j.review_threshold() == threshold
    done = [r for r in rows if r["state"] == "done"]
    for row in done:
        assert row["judge_score"] == pytest.approx(_score(row["seed"]))
        assert row["needs_review"] == (row["judge_score"] < threshold)
    assert sum(r["needs_review"] for r in done) == 3
    failed = [r for r in rows if r["state"] == "failed"]
    assert [(r["judge_score"], r["needs_review"]) for r in failed] == [(None, None)]
    assert summary.review == (
        f"4 of 8 edits (50%) accepted without review; 3 need review "
        f"(judge score < {threshold:g}); 1 failed"
    )


def test_flags_in_the_metrics_files(flagged):
    out, threshold, summary = flagged
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["line"] for r in rows] == [str(i) for i in range(1, 9)]
    assert {r["state"] for r in rows} == {"done", "failed"}
    for row in rows:
        if row["state"] == "failed":
            assert (row["judge_score"], row["needs_review"]) == ("", "")
            assert "fake failure" in row["error"]
        else:
            score = float(row["judge_score"])
            assert row["needs_review"] == ("true" if score < threshold else "false")
    document = json.loads((out / "metrics.json").read_text())
    assert document["review"]["line"] == summary.review
    assert (document["review"]["accepted"], document["review"]["needs_review"]) == (4, 3)
    flags = [r["needs_review"] for r in document["rows"]]
    assert flags.count(True) == 3 and flags.count(False) == 4 and flags.count(None) == 1


def test_report_badges_filter_and_kpi_line(flagged):
    out, threshold, summary = flagged
    page = write_report(out).read_text()
    line = re.search(r"<p id='review-kpi'[^>]*>(.*?)</p>", page).group(1)
    assert line == summary.review.replace("<", "&lt;")
    assert "4 of 8 edits (50%) accepted without review; 3 need review" in line
    assert page.index("review-kpi") < page.index("id='kpis'")  # in the header
    assert page.count("<tr class='needs-review'>") == 3
    assert page.count("<span class='badge'>needs review</span>") == 3
    assert re.search(r"<input type='checkbox' id='only-review'>[^<]*3 edit\(s\)", page)
    assert "getElementById('only-review')" in page
    assert not re.search(r"""(src|href)=['"](https?:|//)""", page)


def test_a_threshold_judges_rows_done_without_a_score(tmp_path):
    manifest = write_manifest(tmp_path, 3)
    out = tmp_path / "out"
    run_batch(_opts(manifest, out), FakeEditor)
    s = run_batch(_opts(manifest, out, review_threshold=0.5), FakeEditor)
    assert (s.to_run, s.done, s.changed) == (3, 3, [])
    s = run_batch(_opts(manifest, out, review_threshold=0.4), FakeEditor)
    assert s.to_run == 0 and s.skipped_done == 3
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert {e["event"] for e in j.events()} >= {"unjudged"}
    assert all(r["needs_review"] == (r["judge_score"] < 0.4) for r in rows)  # the last run's
    s = run_batch(_opts(manifest, out), FakeEditor)  # no threshold: no flags
    with Journal(out / "journal.sqlite") as j:
        assert {r["needs_review"] for r in j.jobs()} == {None}
    assert s.review == ""


def test_an_older_journal_gets_the_new_columns(tmp_path):
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    for column in ("candidates", "judge_score", "needs_review"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.commit()
    db.close()
    with Journal(path) as j:
        columns = {r["name"] for r in j.db.execute("PRAGMA table_info(jobs)")}
    assert {"candidates", "judge_score", "needs_review"} <= columns
