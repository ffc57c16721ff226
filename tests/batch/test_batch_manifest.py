"""Manifest parsing and validation: formats, aliases, line numbers, overrides, duplicates."""

from __future__ import annotations

import json

import pytest

from lusd.batch.jobs import build_jobs
from lusd.batch.manifest import default_id, read_manifest
from lusd.config import EditConfig
from lusd.errors import ConfigError
from tests.support.batch_fakes import write_images


def test_reference_index_csv_loads_as_is(tmp_path):
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "index.csv").write_text(
        "img_path,source_prompt,target_prompt\n"
        "imgs/img000.png,a cat,a cat wearing a party hat\n"
        'imgs/img001.png,"a cup of coffee","a cup of matcha"\n'
    )
    m = read_manifest(tmp_path / "index.csv")
    assert m.errors == []
    assert [r.line for r in m.rows] == [2, 3]
    assert m.rows[0].image == (tmp_path / "imgs" / "img000.png").resolve()
    assert m.rows[1].source_prompt == "a cup of coffee"
    assert m.rows[1].target_prompt == "a cup of matcha"
    assert m.rows[0].preset == "lusd" and m.rows[0].seed == 0 and m.rows[0].focus is None


def test_every_bad_row_reported_with_its_line(tmp_path):
    write_images(tmp_path, 3)
    lines = [
        {
            "image": "img000.png",
            "target_prompt": "a blue circle",
            "focus": "blue; circle",
            "seed": 7,
            "num_steps": 5,
            "use_mask": "false",
        },
        {"image": "missing.png", "target_prompt": "x"},
        {"image": "img001.png", "target_prompt": "   "},
        {"image": "img002.png", "target_prompt": "ok", "seed": "abc"},
        {"image": "img002.png", "target_prompt": "ok", "preset": "nope"},
    ]
    text = "\n".join(json.dumps(r) for r in lines[:3]) + "\n\n{not json\n"
    text += "\n".join(json.dumps(r) for r in lines[3:]) + "\n"
    (tmp_path / "m.jsonl").write_text(text)
    m = read_manifest(tmp_path / "m.jsonl")
    assert [r.line for r in m.rows] == [1]
    row = m.rows[0]
    assert row.focus == ("blue", "circle") and row.seed == 7
    assert row.overrides == {"num_steps": 5, "use_mask": "false"}
    bad = {e.line: e.message for e in m.errors}
    assert sorted(bad) == [2, 3, 5, 6, 7]
    assert "not found" in bad[2]
    assert "target prompt is empty" in bad[3]
    assert "invalid JSON" in bad[5]
    assert "seed must be an integer" in bad[6]
    assert "unknown preset 'nope'" in bad[7]


def test_overrides_resolve_into_config_and_bad_values_fail_alone(tmp_path):
    write_images(tmp_path, 2)
    (tmp_path / "m.csv").write_text(
        "image,target_prompt,preset,num_steps,lambda_reg\n"
        "img000.png,a blue circle,lusd,12,0.1\n"
        "img001.png,a blue circle,dds,abc,\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert m.errors == []
    base = EditConfig(scale_high=0.03)
    jobs, errors = build_jobs(m.rows, base, "model", {"t_min": 100})
    assert [e.line for e in errors] == [3]
    assert "num_steps expects int" in errors[0].message
    cfg = jobs[0].config
    assert (cfg.num_steps, cfg.lambda_reg, cfg.t_min, cfg.scale_high) == (12, 0.1, 100, 0.03)


def test_a_rules_own_setting_is_a_column_for_that_rule_only(tmp_path):
    write_images(tmp_path, 3)
    (tmp_path / "m.csv").write_text(
        "image,target_prompt,preset,cds_weight\n"
        "img000.png,a blue circle,cds,1.5\n"
        "img001.png,a blue circle,lusd,1.5\n"
        "img002.png,a blue circle,cds,-2\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert m.errors == []
    jobs, errors = build_jobs(m.rows, EditConfig(), "model")
    assert jobs[0].config.options["cds_weight"] == 1.5
    assert [e.line for e in errors] == [3, 4]
    assert "cds_weight" in errors[0].message and "must lie in" in errors[1].message


def test_duplicate_output_names_detected(tmp_path):
    write_images(tmp_path, 1)
    (tmp_path / "m.csv").write_text(
        "image,target_prompt,seed,id\n"
        "img000.png,a blue circle,1,\n"
        "img000.png,a blue circle,2,\n"
        "img000.png,a blue circle,3,second\n"
        "img000.png,a green circle,3,SECOND\n"
        "img000.png,a green circle,3,../evil\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert [r.line for r in m.rows] == [2, 4]
    bad = {e.line: e.message for e in m.errors}
    assert "already used by line 2" in bad[3]
    assert "already used by line 4" in bad[5]
    assert "must be letters" in bad[6]
    assert m.rows[0].id == default_id("img000.png", "a blue circle")


def test_config_hash_changes_with_config_prompt_and_seed(tmp_path):
    write_images(tmp_path, 1)
    path = tmp_path / "m.csv"

    def hash_of(row: str) -> str:
        path.write_text("image,target_prompt,seed,num_steps\n" + row + "\n")
        jobs, _ = build_jobs(read_manifest(path).rows, EditConfig(), "m")
        return jobs[0].config_hash

    h = hash_of("img000.png,a blue circle,1,10")
    assert hash_of("img000.png,a blue circle,1,10") == h
    assert hash_of("img000.png,a blue circle,1,11") != h
    assert hash_of("img000.png,a blue circle,2,10") != h
    assert hash_of("img000.png,a red circle,1,10") != h


@pytest.mark.parametrize(
    "content, message",
    [
        ("image,target_prompt,bogus\nx,y,z\n", "unknown column(s) 'bogus'"),
        ("image,source_prompt\nx,y\n", "no target_prompt column"),
        ("", "is empty"),
    ],
)
def test_unusable_manifest_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(tmp_path / "m.csv")


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ConfigError, match="use a .csv or .jsonl file"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ConfigError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
